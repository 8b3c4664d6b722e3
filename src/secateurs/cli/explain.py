"""``secateurs explain``: the channel groups of a model, their widths and share of MACs, and every layer or op that
cannot be pruned and why — before any training (``secateurs.graph.explain``)."""
from __future__ import annotations

import argparse
import json

from . import _common as c
from .info import _shape, _ShapeOnly


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="what structured pruning can remove: groups, MACs shares, fixed layers",
                       description="Trace a model (or a checkpoint) once and list its coupled channel groups: width, "
                                   "layers touched, the MACs removing the whole group would save and its share of "
                                   "the total (MACs = multiply-accumulates; FLOPs = 2*MACs), and every layer or op "
                                   "that cannot be pruned, with the reason.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="M", help="zoo name or package.module:factory")
    src.add_argument("--checkpoint", type=c.existing_dir("--checkpoint"), metavar="DIR")
    p.add_argument("--data", metavar="D", help="take input shape and class count from this dataset")
    p.add_argument("--data-dir", type=c.existing_dir("--data-dir"), default=None)
    p.add_argument("--input-shape", type=_shape, metavar="C,H,W", help="input shape without batch, e.g. 3,32,32")
    p.add_argument("--num-classes", type=c.positive_int("--num-classes"), default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..graph import explain

    if args.checkpoint is not None:
        ckpt = c.load_checkpoint_arg(args.checkpoint)
        model, shape, name = ckpt.model, list(ckpt.spec.input_shape), ckpt.spec.name
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
    model.eval()
    # a seeded random input, not zeros: the graph's verification compares outputs, and zeros hide channel mixing
    result = explain(model, torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)))
    if args.json:
        print(json.dumps({
            "model": name, "input_shape": shape, "total_macs": result.total_macs,
            "groups": [vars(g) for g in result.groups],
            "unprunable": [{"layer": n, "reason": why} for n, why in result.unprunable],
        }, indent=2))
    else:
        print(f"{name} on input {'x'.join(map(str, shape))}")
        print(result.table())
    return 0
