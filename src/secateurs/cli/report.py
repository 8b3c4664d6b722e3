"""``secateurs report``: one comparison table over several checkpoints (dense, sparse, pruned)."""
from __future__ import annotations

import argparse
import json

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("report",
                       help="compare checkpoints: accuracy, params, non-zero params, MACs, file size, CPU latency",
                       description="Print a markdown table (or JSON) comparing checkpoints. Latency is the median "
                                   "forward time after warm-up with the thread count pinned, the checkpoints timed "
                                   "interleaved (round-robin) so that a busy machine slows them alike; the "
                                   "sparse-kernel columns time a copy whose sparse layers use CSR kernels where a "
                                   "measurement at that batch size shows them faster, in the same rounds.",
                       epilog="Columns: accuracy = the test accuracy recorded in the checkpoint's summary.json; "
                              "params = all parameters; non-zero params = parameters that are not exactly zero "
                              "(what an unstructured-sparse model needs to store); MACs = multiply-accumulates per "
                              "image (FLOPs = 2*MACs; zeros are still counted: dense kernels do the work); latency "
                              "b=1 / b=64 = median ms of one forward pass of a batch of 1 / 64; weights = bytes of "
                              "the weight files; sparse = the same latency with sparse kernels.")
    p.add_argument("checkpoints", nargs="+", type=c.existing_dir("checkpoint"), metavar="DIR",
                   help="checkpoint directories, one table row each")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="row names (default: directory names)")
    p.add_argument("--no-latency", action="store_true", help="skip latency measurement")
    p.add_argument("--threads", type=c.positive_int("--threads", c.MAX_THREADS), default=1, metavar="N",
                   help="threads for latency (default 1)")
    p.add_argument("--repeats", type=c.positive_int("--repeats", c.MAX_REPEATS), default=20, metavar="N",
                   help="timed forward passes per model at batch 1 (a quarter of them, at least 3, at batch 64) "
                        "(default 20)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the markdown table")
    p.add_argument("--out", default=None, type=c.path_arg("--out"), metavar="FILE",
                   help="also write the table (markdown, or JSON with --json) to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    c.add_trust_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..io import write_json_atomic, write_text_atomic
    from ..errors import InputError
    from ..report import compare_checkpoints, latency_setting, markdown_table

    if args.names is not None and len(args.names) != len(args.checkpoints):
        raise c.UsageError(f"--names: got {len(args.names)} names for {len(args.checkpoints)} checkpoints")
    if args.out is not None:
        c.claim_output(args, "--out", args.out, "file", [("checkpoint", d) for d in args.checkpoints])
    try:
        rows = compare_checkpoints(args.checkpoints, args.names, latency=not args.no_latency, threads=args.threads,
                                   repeats=args.repeats, trust_model_code=args.trust_model_code, progress=None)
    except InputError as e:
        raise c.UsageError(f"checkpoint: {e}") from None
    if args.json:
        payload = {"threads": args.threads, "rows": [r.to_dict() for r in rows], "versions": c.versions(),
                   "latency": None if args.no_latency else latency_setting(1, args.threads, args.repeats)}
        print(json.dumps(payload, indent=2))
        if args.out is not None:
            write_json_atomic(args.out, payload)
    else:
        table = markdown_table(rows)
        print(table)
        if args.out is not None:
            write_text_atomic(args.out, table + "\n")
    return 0
