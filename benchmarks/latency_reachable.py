"""How much latency a model can lose on this machine, and how much of that a target asks for.

Per dense Fashion-MNIST checkpoint (committed, else the local cache) and latency batch size (1 thread, torch): the
latency profile of this machine (``structured.latency.latency_model``: cached, measured when absent), its dense
latency, and ``latency_reachable``: the reduction the latency model predicts with every group at one channel (the
criteria's floor; the front door refuses a target above it). Also the share of it that each ``--targets`` entry
asks for. No pruning, no accuracy: it puts numbers on docs/latency.md's reading of which targets are heavy.

    python benchmarks/latency_reachable.py [--models resnet20 resnet56] [--batches 1 64] [--targets 0.3 0.5]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from _common import dense_checkpoint, environment, write_results


def run(args, log) -> list[dict]:
    from secateurs.graph import build_channel_graph
    from secateurs.structured.latency import LatencyConfig, latency_model
    from secateurs.structured.select.ranking import ranking_floor

    rows = []
    for name in args.models:
        ckpt = dense_checkpoint(name, train_if_missing=False)
        dense = ckpt.model.eval()
        x = torch.zeros(1, *ckpt.spec.input_shape)
        graph = build_channel_graph(dense, x)
        smallest, _ = ranking_floor(graph, 1, 1)
        for batch in args.batches:
            t0 = time.perf_counter()
            cost = latency_model(dense, graph, tuple(x.shape[1:]), LatencyConfig(batch_size=batch,
                                                                                  threads=args.threads))
            reachable = cost.reduction(smallest)
            rows.append({"model": name, "batch": batch, "latency_ms_dense_predicted": cost.dense,
                         "latency_reachable": reachable, "profile_s": time.perf_counter() - t0,
                         "profile_build_s": cost.profile.build_s,
                         "held_out_mean_abs_error_pct": cost.profile.validation.get("mean_abs_error_pct"),
                         "constant_ms": cost.profile.constant_ms, "beta": cost.profile.beta,
                         "alpha": cost.profile.alpha, "form": cost.profile.validation.get("form"),
                         "share_asked": {str(r): r / reachable for r in args.targets},
                         "loadavg_after": os.getloadavg()})
            log(f"{name} b{batch}: dense {cost.dense:.3f} ms, reachable {reachable:.3f}")
    return rows


def _num(v, spec: str) -> str:  # rows written before a column existed show a dash
    return "-" if v is None else format(v, spec)


def markdown(payload) -> str:
    env, rows, targets = payload["environment"], payload["rows"], payload["args"]["targets"]
    lines = ["# Latency reachable with every group at its floor", "",
             f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), {env['torch_threads']} thread(s), "
             f"runtime torch, load average at start {env['loadavg_start'][0]:.2f}. `reachable` = 1 - (the latency "
             "model's ms with every prunable group at one channel) / (its dense ms): the most a latency target can "
             "ask (`latency_reachable` in summary.json). `profile s`: this run's time to build (or load, when cached) "
             "the profile; `build s`: the build time the profile records; `constant ms`, `β`, `form`: its "
             "whole-model fit (`cost.profiling._fit`).", "",
             "| model | batch | dense ms (model) | reachable | " + " | ".join(f"{t:.0%} asks for" for t in targets)
             + " | held-out error % | constant ms | β | form | profile s | build s |",
             "|---|---|---|---|" + "---|" * len(targets) + "---|---|---|---|---|---|"]
    for r in rows:
        shares = " | ".join(f"{r['share_asked'][str(t)]:.2f}" for t in targets)
        lines.append(f"| {r['model']} | {r['batch']} | {r['latency_ms_dense_predicted']:.3f} | "
                     f"{r['latency_reachable']:.3f} | {shares} | {_num(r['held_out_mean_abs_error_pct'], '.1f')} | "
                     f"{_num(r.get('constant_ms'), '.3f')} | {_num(r.get('beta'), '.3f')} | {r.get('form') or '-'} | "
                     f"{r['profile_s']:.1f} | {r['profile_build_s'] or 0:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--targets", nargs="+", type=float, default=[0.3, 0.5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stem", default="latency_reachable")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    payload = {"environment": environment(args.threads), "args": vars(args)}
    payload["rows"] = run(args, lambda s: print(s, flush=True))
    payload["environment"]["loadavg_end"] = os.getloadavg()
    write_results(args.stem, payload, markdown(payload))


if __name__ == "__main__":
    main()
