"""``secateurs info``: per-layer shapes, parameters and MACs of a model or a checkpoint."""
from __future__ import annotations

import argparse
import json

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="parameters and MACs per layer (MACs = multiply-accumulates; FLOPs = 2*MACs)",
                       description="Count parameters and MACs per layer and in total, for a model on a dataset's "
                                   "input shape, a given input shape, or a saved checkpoint. `secateurs info "
                                   "--models` lists the zoo's model names and the dataset names.",
                       epilog="Printed: one row per layer (type, output shape, params, MACs) and the totals; "
                              "--json gives the same as {model, params, macs, flops, layers: [...]}.")
    c.add_model_source_args(p, required=False)
    p.add_argument("--models", action="store_true",
                   help="list the model zoo's names (for --model) and the datasets (for --data), then exit")
    p.add_argument("--json", action="store_true", help="print JSON (with `params` and `macs` totals)")
    p.set_defaults(run=run)


def list_zoo() -> str:
    from ..data import list_datasets
    from ..models import list_models

    return (f"models (--model): {', '.join(list_models())}\n"
            "  or package.module:factory (your own), torchvision:NAME, timm:NAME\n"
            f"datasets (--data): {', '.join(list_datasets())}")


def run(args: argparse.Namespace) -> int:
    from ..flops import count_model

    if args.models:
        print(list_zoo())
        return 0
    if args.model is None and args.checkpoint is None:
        raise c.UsageError("one of --model, --checkpoint or --models is required")
    model, shape, name = c.resolve_model_source(args)
    result = count_model(model, shape)
    if args.json:
        print(json.dumps({"model": name, **result.to_dict()}, indent=2))
    else:
        print(f"{name} on input {'x'.join(map(str, shape))}")
        print(result.table())
    return 0
