"""``secateurs info``: per-layer shapes, parameters and MACs of a model or a checkpoint."""
from __future__ import annotations

import argparse
import json

from . import _common as c


def _shape(text: str) -> list[int]:
    try:
        dims = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-shape must be comma-separated integers like 3,32,32, got {text!r}")
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"--input-shape sizes must be >= 1, got {text!r}")
    return dims


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="parameters and MACs per layer (MACs = multiply-accumulates; FLOPs = 2*MACs)",
                       description="Count parameters and MACs per layer and in total, for a model on a dataset's "
                                   "input shape, a given input shape, or a saved checkpoint.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="M", help="zoo name or package.module:factory")
    src.add_argument("--checkpoint", type=c.existing_dir("--checkpoint"), metavar="DIR")
    p.add_argument("--data", metavar="D", help="take input shape and class count from this dataset")
    p.add_argument("--data-dir", type=c.existing_dir("--data-dir"), default=None)
    p.add_argument("--input-shape", type=_shape, metavar="C,H,W", help="input shape without batch, e.g. 3,32,32")
    p.add_argument("--num-classes", type=c.positive_int("--num-classes"), default=10)
    p.add_argument("--json", action="store_true", help="print JSON (with `params` and `macs` totals)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..flops import count_model

    if args.checkpoint is not None:
        ckpt = c.load_checkpoint_arg(args.checkpoint)
        model, shape, name = ckpt.model, ckpt.spec.input_shape, ckpt.spec.name
    else:
        if (args.data is None) == (args.input_shape is None):
            raise c.UsageError("--model needs exactly one of --data or --input-shape")
        if args.data is not None:
            from ..data import get_dataset, list_datasets

            if args.data not in list_datasets():
                raise c.UsageError(f"--data: unknown dataset {args.data!r}; known: {', '.join(list_datasets())}")
            data = get_dataset(args.data, data_dir=args.data_dir)
            shape, classes = list(data.input_shape), data.num_classes
        else:
            shape, classes = args.input_shape, args.num_classes
        model, _ = c.make_model(args.model, _ShapeOnly(shape, classes, args.data))
        name = args.model
    result = count_model(model, shape)
    if args.json:
        print(json.dumps({"model": name, **result.to_dict()}, indent=2))
    else:
        print(f"{name} on input {'x'.join(map(str, shape))}")
        print(result.table())
    return 0


class _ShapeOnly:
    """Stands in for DataSplits where only the shape and the class count matter."""

    def __init__(self, shape, num_classes, name=None):
        self.input_shape, self.num_classes, self.name = tuple(shape), num_classes, name
