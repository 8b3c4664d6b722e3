"""``secateurs profile``: measure a latency profile of a model on this machine and say how well it predicts."""
from __future__ import annotations

import argparse
import json

from ..cost._names import DTYPE_NAMES, RUNTIMES
from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="measure a latency profile (per-layer latency vs widths) on this machine",
                       description="Time every conv/linear layer of the model on a small grid of input/output "
                                   "widths, and the whole model dense and at a few pruned widths, at one batch size, "
                                   "thread count, dtype and runtime; fit the latency model that --latency-reduction "
                                   "targets use, and print its error on pruned widths it was not fitted on. The "
                                   "profile is cached (under $SECATEURS_CACHE or ~/.cache/secateurs) for later "
                                   "commands with the same setting, and written to --out.",
                       epilog="Timing is interleaved (models and widths in alternating rounds, medians); the load "
                              "average before and after is printed and stored: on a busy machine the error is "
                              "larger, and so is the error of every later measurement.")
    c.add_model_source_args(p)
    p.add_argument("--latency-batch-size", type=c.positive_int("--latency-batch-size", c.MAX_BATCH_SIZE), default=1,
                   metavar="B", help="batch size the latency is for")
    p.add_argument("--threads", type=c.positive_int("--threads", c.MAX_THREADS), default=1, metavar="N",
                   help="torch (or onnxruntime) threads")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="what runs the model: torch eager, or onnxruntime (when installed; BatchNorm is folded "
                        "into the convs by its graph optimiser)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="dtype of weights and inputs")
    p.add_argument("--held-out", type=c.positive_int("--held-out", 100), default=3, metavar="K",
                   help="pruned random-width copies timed only to check the prediction")
    p.add_argument("--time-budget", type=c.positive_float("--time-budget", allow_zero=True, high=3600.0),
                   default=5.0, metavar="SECONDS",
                   help="timing of the whole models lasts at least this long (and 5 rounds); each layer table "
                        "a twentieth of it (and 3 rounds)")
    p.add_argument("--seed", type=c.nonneg_int("--seed", c.MAX_SEED), default=0, help="seed of the random widths")
    p.add_argument("--out", default=None, type=c.path_arg("--out"), metavar="FILE",
                   help="also write the profile (JSON) to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print the profile's summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cost.latency_profile import cache_path, require_onnxruntime, runtime_dtype_problem
    from ..cost.profiling import profile_latency
    from ..graph import build_channel_graph

    problem = runtime_dtype_problem(args.runtime, args.dtype)
    if problem:
        raise c.UsageError(f"--dtype {args.dtype}: with --runtime {args.runtime}: {problem}")
    if args.runtime == "onnxruntime":
        try:
            require_onnxruntime()
        except ImportError as e:
            raise c.UsageError(f"--runtime onnxruntime: {e}") from None
    inputs = [("--checkpoint", args.checkpoint)] if args.checkpoint is not None else []
    if args.out is not None:
        c.claim_output(args, "--out", args.out, "file", inputs)
    model, shape, name = c.resolve_model_source(args)
    model.eval()
    graph = build_channel_graph(model, torch.zeros(1, *shape))
    log = None if args.json else (lambda s: print(f"profile: {s}", flush=True))
    prof = profile_latency(model, graph, shape, batch_size=args.latency_batch_size, threads=args.threads,
                           dtype=args.dtype, runtime=args.runtime, held_out=args.held_out, seed=args.seed, log=log,
                           model_budget_s=args.time_budget, layer_budget_s=args.time_budget / 20)
    cache = cache_path(prof.key)
    cache.parent.mkdir(parents=True, exist_ok=True)
    prof.save(cache)
    if args.out is not None:
        prof.save(args.out)
    v = prof.validation
    summary = {"model": name, "input_shape": shape, "setting": {k: prof.key[k] for k in
                                                                ("batch_size", "threads", "dtype", "runtime")}
               | {"allocator": prof.allocator},
               "device": prof.key["device"], "layer_tables": len(prof.tables), "layer_calls": len(prof.calls),
               "dense_ms": prof.dense_ms, "constant_ms": prof.constant_ms, "fit": v["form"], "beta": prof.beta,
               "alpha": prof.alpha, "held_out_mean_abs_error_pct": v["mean_abs_error_pct"],
               "held_out_max_abs_error_pct": v["max_abs_error_pct"], "held_out": v["held_out"],
               "build_s": prof.build_s, "loadavg_before": prof.timing.get("loadavg_before"),
               "loadavg_after": prof.timing.get("loadavg_after"), "cache": str(cache),
               "out": None if args.out is None else str(args.out)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{name} on {'x'.join(map(str, shape))}, batch {args.latency_batch_size}, {args.threads} thread(s), "
          f"{args.dtype}, {args.runtime}, allocator {summary['setting']['allocator']}: {prof.key['device']}")
    print(f"dense {prof.dense_ms:.3f} ms = constant {prof.constant_ms:.3f} ms + {len(prof.calls)} layer calls "
          f"({len(prof.tables)} measured tables; fit {v['form']}: beta {prof.beta:.3g}, alpha {prof.alpha:.3g})")
    for r in v["held_out"]:
        print(f"  held out, {100 * r['fraction_kept']:.0f}% of channels kept: predicted {r['predicted_ms']:.3f} ms, "
              f"measured {r['measured_ms']:.3f} ms, error {100 * r['error']:+.1f}%")
    print(f"held-out error: mean {v['mean_abs_error_pct']:.1f}%, max {v['max_abs_error_pct']:.1f}% "
          f"(built in {prof.build_s:.1f} s; load average {summary['loadavg_before']} -> {summary['loadavg_after']})")
    print(f"cached: {cache}" + (f"; written: {args.out}" if args.out is not None else ""))
    return 0
