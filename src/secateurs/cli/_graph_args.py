"""``--graph-time-limit`` / ``--graph-max-indices``: the bounds on tracing a model's channel graph (``GraphLimits``),
shared by every command that builds one. A model that passes them stops with one line and exit status 2."""
from __future__ import annotations

import argparse

from . import _common as c


def add_graph_limit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("channel graph bounds")
    g.add_argument("--graph-time-limit", type=c.positive_float("--graph-time-limit"), default=60.0,
                   metavar="SECONDS", help="stop tracing the channel graph after this long (default 60)")
    g.add_argument("--graph-max-indices", type=c.positive_int("--graph-max-indices"), default=20_000_000,
                   metavar="N", help="stop when the group enumeration has produced N channel indices, which "
                                     "bounds its memory at roughly N x 100 bytes (default 20000000)")


def graph_limits(args: argparse.Namespace):
    from ..graph import GraphLimits

    return GraphLimits(seconds=args.graph_time_limit, indices=args.graph_max_indices)
