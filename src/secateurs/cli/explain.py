"""``secateurs explain``: the channel groups of a model, their widths and share of MACs, and every layer or op that
cannot be pruned and why — before any training (``secateurs.graph.explain``)."""
from __future__ import annotations

import argparse
import json

from . import _common as c
from ._graph_args import add_graph_limit_args, graph_limits


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="what structured pruning can remove: groups, MACs shares, fixed layers",
                       description="Trace a model (or a checkpoint) once and list its coupled channel groups: width, "
                                   "layers touched, the MACs removing the whole group would save and its share of "
                                   "the total (MACs = multiply-accumulates; FLOPs = 2*MACs), and every layer or op "
                                   "that cannot be pruned, with the reason.")
    c.add_model_source_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_graph_limit_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..explanation import explain

    model, shape, name = c.resolve_model_source(args)
    model.eval()
    # a seeded random input, not zeros: the graph's verification compares outputs, and zeros hide channel mixing
    result = explain(model, torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)),
                     limits=graph_limits(args))
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
