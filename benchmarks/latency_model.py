"""How well the latency cost model predicts the measured latency of pruned models it was not fitted on.

For each model (zoo, random weights: latency depends on widths only) and batch size, ``profile_latency`` builds a
profile on this machine (per-layer width grids + whole-model calibration, ``secateurs.cost.latency_profile``) and
times ``--held-out`` pruned copies at random widths that the fit never saw. Reported per held-out copy and
summarised: the error of the model, of two simpler predictors (latency proportional to MACs; the isolated layer
tables at face value, without the whole-model fit), and the **noise floor**: the same held-out copies timed a
second time (interleaved with the dense model again), the difference between the two measurements. An error at
the noise floor is as good as this machine can tell.

    python benchmarks/latency_model.py [--models resnet56 mobilenetv2] [--batches 1 64] [--threads 1]
                                       [--grids current below above] [--stairs]

``--grids current below above`` profiles every (model, batch) once per width-grid rule, one after the other: the
library's (1 channel, the quarters, and a point on each side of every multiple of 8), *below* (the rule it
replaced: only one below each multiple of 8) and *above* (only one above). ``--allocator`` first counts the
page faults of one conv in fresh processes, glibc's allocator as found and steady
(``secateurs.timing.steady_allocator``). ``--stairs`` first times one 3x3 conv of each ResNet stage alone at every
width around the multiples of 8 (the staircase the grid has to carry).

The load average before and after every profile is recorded, and the markdown gives its range.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import torch

from _common import environment, write_results


def noise_floor(model, graph, prof, shape, batch: int) -> list[float]:
    """Time dense + the held-out copies again (same widths) and return each copy's ms on the dense best round."""
    from secateurs.cost.profiling import pruned_copy
    from secateurs.timing import time_models

    configs = [{}] + [{g: list(range(n)) for g, n in r["kept"].items()} for r in prof.validation["held_out"]]
    models = [pruned_copy(model, graph, kept, shape, torch.float32, "cpu") for kept in configs]
    t = time_models(models, torch.randn(batch, *shape), warmup=1, min_rounds=5, max_rounds=50, budget_s=5.0)
    return [t.best_ms[0] * r for r in t.ratios[1:]]


def stairs(batches, threads) -> list[dict]:
    """A 3x3 conv (c -> c channels) of each ResNet-56 stage timed alone at widths around the multiples of 8,
    interleaved, best round per width."""
    from torch import nn

    from secateurs.timing import interleaved

    out = []
    for batch in batches:
        for hw, full in ((32, 16), (16, 32), (8, 64)):
            widths = sorted({1} | {w for m in range(8, full + 1, 8) for w in (m - 1, m, m + 1) if w <= full})
            fns = []
            for c in widths:
                conv, x = nn.Conv2d(c, c, 3, 1, 1, bias=False).eval(), torch.randn(batch, c, hw, hw)

                def run(conv=conv, x=x):
                    with torch.inference_mode():
                        conv(x)
                fns.append(run)
            t = interleaved(fns, warmup=1, min_rounds=5, max_rounds=50, budget_s=3.0, min_block_s=0.002,
                            sub_blocks=1)
            out.append({"batch": batch, "hw": hw, "full": full, "threads": threads,
                        "ms": dict(zip(widths, t.best_ms)), "loadavg": os.getloadavg()})
            print(f"stairs batch {batch} {hw}x{hw}: " + " ".join(f"{c}:{ms:.2f}" for c, ms in zip(widths, t.best_ms)),
                  flush=True)
    return out


_ALLOC_PROBE = """
import json, resource, sys, time
import torch
from torch import nn
from secateurs.timing import steady_allocator
steady = steady_allocator() if sys.argv[1] == "steady" else False
torch.set_num_threads(int(sys.argv[2]))
conv = nn.Conv2d(16, 16, 3, 1, 1, bias=False).eval()
x = torch.randn(int(sys.argv[3]), 16, 32, 32)
with torch.inference_mode():
    for _ in range(3):
        conv(x)
    f0, ts = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
    for _ in range(100):
        t0 = time.perf_counter(); conv(x); ts.append(1e3 * (time.perf_counter() - t0))
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ts.sort()
print(json.dumps({"steady": steady, "minor_faults": f1 - f0, "ms_min": ts[0], "ms_median": ts[50], "ms_p90": ts[90],
                  "ms_max": ts[-1]}))
"""


def allocator(threads: int, batch: int = 64, processes: int = 3) -> list[dict]:
    """The conv on ResNet-56's 32x32 maps (16 -> 16, 3x3) called 100 times, each call timed, in fresh processes
    with glibc's allocator as found (``SECATEURS_ALLOCATOR=as-found``) and with ``steady_allocator()``: minor page
    faults and the spread of the per-call time (``secateurs.timing.steady_allocator``)."""
    import json
    import subprocess
    import sys

    out = []
    for k in range(processes):
        for mode in ("as-found", "steady"):
            env = dict(os.environ, SECATEURS_ALLOCATOR=mode, OMP_NUM_THREADS=str(threads))
            r = subprocess.run([sys.executable, "-c", _ALLOC_PROBE, mode, str(threads), str(batch)], env=env,
                               capture_output=True, text=True, check=True)
            got = json.loads(r.stdout)  # the regime the probe ran under, not the one asked for
            row = {"mode": "steady" if got["steady"] else "as-found", "requested": mode, "process": k,
                   "batch": batch, **got}
            out.append(row)
            print(f"allocator {mode:8s} process {k}: {row['minor_faults']} faults / 100 calls, ms min "
                  f"{row['ms_min']:.2f} median {row['ms_median']:.2f} p90 {row['ms_p90']:.2f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet56", "mobilenetv2"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--held-out", type=int, default=4)
    p.add_argument("--runtime", default="torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stem", default="latency_model")
    p.add_argument("--grids", nargs="+", default=["current"], choices=["current", "below", "above"],
                   help="width-grid rules to profile with (below / above: one point on that side of each multiple "
                        "of 8 only)")
    p.add_argument("--stairs", action="store_true", help="first time one conv per ResNet stage at every width")
    p.add_argument("--allocator", action="store_true",
                   help="first count page faults of one conv in fresh processes, allocator as found vs steady")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from secateurs.cost import latency_profile
    from secateurs.cost.profiling import profile_latency
    from secateurs.graph import build_channel_graph
    from secateurs.models import create_model

    shape = (3, 32, 32)
    rows, start = [], time.perf_counter()
    alloc_rows = allocator(args.threads) if args.allocator else []
    stair_rows = stairs(args.batches, args.threads) if args.stairs else []
    current = latency_profile._grid
    for name, batch, grid in ((n, b, g) for n in args.models for b in args.batches for g in args.grids):
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_channels=3).eval()
        graph = build_channel_graph(model, torch.zeros(1, *shape))
        load_before = os.getloadavg()
        latency_profile._grid = current if grid == "current" else functools.partial(
            current, sides=(-1,) if grid == "below" else (1,))
        try:
            prof = profile_latency(model, graph, shape, batch_size=batch, threads=args.threads,
                                   runtime=args.runtime, held_out=args.held_out, seed=args.seed)
        finally:
            latency_profile._grid = current
        again = noise_floor(model, graph, prof, shape, batch) if args.runtime == "torch" else None
        dense = prof.dense_ms
        held = []
        for k, r in enumerate(prof.validation["held_out"]):
            m = r["measured_ms"]
            held.append({"fraction_kept": r["fraction_kept"], "macs_ratio": r["macs_ratio"], "measured_ms": m,
                         "predicted_ms": r["predicted_ms"], "error_model": r["predicted_ms"] / m - 1,
                         "error_macs": r["macs_ratio"] * dense / m - 1,
                         "error_tables_only": r["tables_only_ms"] / m - 1,
                         "measured_again_ms": again[k] if again else None,
                         "noise": again[k] / m - 1 if again else None})
        mae = {k: 100 * statistics.fmean(abs(h[k]) for h in held)
               for k in ("error_model", "error_macs", "error_tables_only") + (("noise",) if again else ())}
        row = {"model": name, "batch": batch, "grid": grid, "threads": args.threads, "runtime": args.runtime,
               "dense_ms": dense, "constant_ms": prof.constant_ms, "fit": prof.validation["form"],
               "beta": prof.beta, "alpha": prof.alpha, "tables": len(prof.tables), "calls": len(prof.calls),
               "profile_s": prof.build_s, "mean_abs_error_pct": mae, "held_out": held,
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "timing": prof.timing}
        rows.append(row)
        print(f"{name:12s} batch {batch:3d} grid {grid:8s}: dense {dense:8.2f} ms, profile {prof.build_s:5.1f} s, "
              f"mean |error| model {mae['error_model']:.1f}%  MACs {mae['error_macs']:.1f}%  "
              f"tables-only {mae['error_tables_only']:.1f}%" +
              (f"  noise floor {mae['noise']:.1f}%" if again else "") +
              f"  (load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f})", flush=True)
    env = environment(args.threads) | {"loadavg_end": os.getloadavg(), "elapsed_s": time.perf_counter() - start}
    write_results(args.stem, {"environment": env, "args": vars(args), "rows": rows, "stairs": stair_rows,
                              "allocator": alloc_rows},
                  markdown(env, args, rows, stair_rows, alloc_rows))


def markdown(env, args, rows, stair_rows=(), alloc_rows=()) -> str:
    loads = [r["loadavg_before"][0] for r in rows] + [r["loadavg_after"][0] for r in rows]
    md = ["# Latency cost model: prediction error on held-out pruned widths", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), {args.threads} thread(s), runtime "
          f"{args.runtime}, input 3x32x32, zoo models with random weights, seed {args.seed}. "
          f"Per row: one profile (`secateurs.cost.profiling.profile_latency`: per-layer width grids, whole "
          f"models dense + 3 uniform + 2 random widths for the fit), then {args.held_out} pruned copies at random "
          "widths the fit never saw. Error = predicted / measured - 1 (mean of |error| over the held-out copies). "
          "*MACs* predicts latency proportional to MACs; *tables only* uses the isolated layer tables without the "
          "whole-model fit; *noise floor* = the same copies timed a second time vs the first time.",
          f"Load average {min(loads):.2f}-{max(loads):.2f} (1-minute) during the runs. Timings are interleaved "
          "medians of paired ratios on the best round; on a loaded machine the noise floor is high and the errors "
          "with it. *grid*: the width grid of the layer tables (*current*: 1 channel, the quarters, and a point on "
          "each side of every multiple of 8; *below* / *above*: only the point on that side; *below* is the rule "
          "before the staircase fix).", ""]
    allocs = sorted({r["timing"].get("allocator", "as found") for r in rows})
    md += [f"Allocator during the profiles: {', '.join(allocs)} (`secateurs.timing.steady_allocator`).", ""]
    if alloc_rows:
        md += ["**The allocator**: the 3x3 conv on 32x32 maps (16 -> 16 channels, batch "
               f"{alloc_rows[0]['batch']}) called 100 times in a fresh process, each call timed:", "",
               "| allocator | process | minor page faults / 100 calls | ms min | median | p90 | max |",
               "|---|---|---|---|---|---|---|"]
        for r in alloc_rows:
            md.append(f"| {r['mode']} | {r['process']} | {r['minor_faults']} | {r['ms_min']:.2f} | "
                      f"{r['ms_median']:.2f} | {r['ms_p90']:.2f} | {r['ms_max']:.2f} |")
        md.append("")
    if stair_rows:
        md += ["**The staircase**: one 3x3 conv (c -> c channels, no bias) of each ResNet-56 stage timed alone, "
               "best interleaved round, ms:", ""]
        for r in stair_rows:
            md.append(f"- batch {r['batch']}, {r['hw']}x{r['hw']}: " +
                      ", ".join(f"{c}: {ms:.2f}" for c, ms in r["ms"].items()))
        md.append("")
    md += ["| model | batch | grid | dense ms | profile s | fit | model error % | MACs-proportional error % | "
           "tables-only error % | noise floor % | load before / after |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["mean_abs_error_pct"]
        noise = f"{e['noise']:.1f}" if "noise" in e else "-"
        md.append(f"| {r['model']} | {r['batch']} | {r.get('grid', 'below')} | {r['dense_ms']:.2f} | "
                  f"{r['profile_s']:.1f} | {r['fit']} "
                  f"(β {r['beta']:.2f}) | {e['error_model']:.1f} | {e['error_macs']:.1f} | "
                  f"{e['error_tables_only']:.1f} | {noise} | {r['loadavg_before'][0]:.2f} / "
                  f"{r['loadavg_after'][0]:.2f} |")
    if args.runtime == "onnxruntime":
        md += ["", "**onnxruntime: the per-layer model does not transfer.** A layer timed alone in its own session "
               "pays layout reorders (NCHW to the blocked NCHWc layout and back) and a session's overhead that a "
               "whole fused graph does not, and in the fused graph widths count in blocks of the vector length "
               "(a 16-to-12-channel cut saves little): the isolated tables overstate what pruning saves "
               "(tables-only error above 100%), and the fit cannot repair that. With `--runtime onnxruntime` a "
               "latency target therefore rests on the measured correction rounds, not on the prediction."]
    md += ["", "Per held-out copy (channels kept, MACs ratio, measured ms, model / MACs / tables-only error %, "
           "second measurement):", ""]
    for r in rows:
        for h in r["held_out"]:
            again = f", again {h['measured_again_ms']:.2f} ms" if h["measured_again_ms"] is not None else ""
            md.append(f"- {r['model']} b{r['batch']} {r.get('grid', 'below')}: kept "
                      f"{100 * h['fraction_kept']:.0f}%, MACs x"
                      f"{h['macs_ratio']:.2f}, {h['measured_ms']:.2f} ms; errors {100 * h['error_model']:+.1f} / "
                      f"{100 * h['error_macs']:+.1f} / {100 * h['error_tables_only']:+.1f}{again}")
    return "\n".join(md) + "\n"


def rewrite(stem: str) -> None:
    """Regenerate results/<stem>.md from the committed JSON (no run)."""
    from argparse import Namespace

    from _common import rewrite_markdown

    rewrite_markdown(stem, lambda d: markdown(d["environment"], Namespace(**d["args"]), d["rows"],
                                              d.get("stairs", []), d.get("allocator", [])))


if __name__ == "__main__":
    main()
