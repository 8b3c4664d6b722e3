"""``secateurs info``: per-layer shapes, parameters and MACs of a model or a checkpoint."""
from __future__ import annotations

import argparse
import json

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="parameters and MACs per layer (MACs = multiply-accumulates; FLOPs = 2*MACs)",
                       description="Count parameters and MACs per layer and in total, for a model on a dataset's "
                                   "input shape, a given input shape, or a saved checkpoint.")
    c.add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print JSON (with `params` and `macs` totals)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..flops import count_model

    model, shape, name = c.resolve_model_source(args)
    result = count_model(model, shape)
    if args.json:
        print(json.dumps({"model": name, **result.to_dict()}, indent=2))
    else:
        print(f"{name} on input {'x'.join(map(str, shape))}")
        print(result.table())
    return 0
