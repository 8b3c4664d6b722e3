"""What AutoBot's latency loss sees: each prunable group's per-channel worth at full width (the gradient of the
soft cost at all-ones gates) under the soft latency model, against its worth under MACs (both as a fraction of the dense cost), on a profile measured on this machine.

``LatencyModel.per_channel()`` is the gradient of ``soft`` at all-ones gates, the price AutoBot's loss puts on
closing a gate of a group that is still whole. *secant* is the model's ``soft`` (each table's corners: one
channel and full width); *quarters* re-reads the same profile at one channel, the quarters and full width (the
soft read before ca07439), for contrast. A ratio near 0 means the loss sees that group as free. The profile is
measured here (``latency_model``: cached per setting; ``--fresh`` measures this model's again).

    python benchmarks/soft_worth.py [--model resnet56] [--batches 1 64]

The dense model is the committed Fashion-MNIST checkpoint (1x28x28), as in ``latency_target.py``'s part B.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from _common import dense_checkpoint, environment, write_results


def quarters(table):
    """``table`` read at one channel, the quarters and full width of each grid (points not on them dropped)."""
    from secateurs.cost.latency_profile import LayerTable

    def keep(grid):
        full = grid[-1]
        want = {grid[0], full} | {round(full * q / 4) for q in (1, 2, 3)}
        return [k for k, p in enumerate(grid) if p in want]

    ki, ko = keep(table.in_grid), keep(table.out_grid)
    return LayerTable(table.signature, [table.in_grid[k] for k in ki], [table.out_grid[k] for k in ko],
                      [[table.ms[i][j] for j in ko] for i in ki])


def worth(model_name: str, batch: int, threads: int, fresh: bool = False) -> list[dict]:
    from secateurs.cost.latency import LatencyModel
    from secateurs.cost.macs import MacsModel
    from secateurs.cost.profiling import cached_profile
    from secateurs.graph import build_channel_graph

    dense = dense_checkpoint(model_name, train_if_missing=False).model.eval()
    x = torch.zeros(1, 1, 28, 28)
    graph = build_channel_graph(dense, x)
    prof = cached_profile(dense, graph, tuple(x.shape[1:]), batch_size=batch, threads=threads, rebuild=fresh)
    secant, old = LatencyModel(graph, prof), LatencyModel(graph, prof)
    old._soft_tables = [quarters(prof.tables[c["table"]]) for c in prof.calls]  # dense unchanged: both end at full
    macs = MacsModel(graph)
    per = {k: m.per_channel() for k, m in (("macs", macs), ("secant", secant), ("quarters", old))}
    dense_cost = {"macs": macs.dense, "secant": secant.dense, "quarters": old.dense}
    rows = []
    for gid, width in secant.widths.items():
        share = {k: per[k][gid] / dense_cost[k] for k in per}
        rows.append({"group": gid, "width": width, **{f"{k}_share": v for k, v in share.items()},
                     "secant_over_macs": share["secant"] / share["macs"],
                     "quarters_over_macs": share["quarters"] / share["macs"]})
    return rows


def markdown(env, args, out) -> str:
    md = ["# What AutoBot's latency loss sees: per-channel worth at full width", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), {args.threads} thread(s), allocator "
          f"{env['allocator']}, load average {env['loadavg_start'][0]:.2f} at the start, "
          f"{env['loadavg_end'][0]:.2f} at the end. Dense checkpoint `{args.model}` on Fashion-MNIST (1x28x28). "
          "Worth = the gradient of the soft cost at all-ones gates, per channel, as a fraction of the dense cost; "
          "the ratio to MACs' is what the loss weighs a channel by on this device (0: free to keep).", ""]
    for batch, rows in out.items():
        md += [f"## batch {batch}", "", "| group | width | MACs worth (1e-3) | secant worth (1e-3) | secant / MACs | "
               "quarters worth (1e-3) | quarters / MACs |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            md.append(f"| {r['group']} | {r['width']} | {1e3 * r['macs_share']:.3f} | {1e3 * r['secant_share']:.3f} | "
                      f"{r['secant_over_macs']:.2f} | {1e3 * r['quarters_share']:.3f} | {r['quarters_over_macs']:.2f} |")
        lo = min(rows, key=lambda r: r["quarters_over_macs"])
        los = min(rows, key=lambda r: r["secant_over_macs"])
        md += ["", f"Lowest ratio: quarters {lo['quarters_over_macs']:.2f} ({lo['group']}), secant "
               f"{los['secant_over_macs']:.2f} ({los['group']}).", ""]
    return "\n".join(md) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56", choices=["resnet20", "resnet56"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="measure the profiles again (clears the latency cache)")
    p.add_argument("--stem", default="soft_worth")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("SECATEURS_CACHE", os.path.expanduser("~/.cache/secateurs"))
    from secateurs.timing import allocator

    env = environment(args.threads) | {"allocator": allocator()}
    t0 = time.perf_counter()
    out = {b: worth(args.model, b, args.threads, args.fresh) for b in args.batches}
    env |= {"loadavg_end": os.getloadavg(), "elapsed_s": time.perf_counter() - t0}
    write_results(args.stem, {"environment": env, "args": vars(args), "rows": {str(b): r for b, r in out.items()}},
                  markdown(env, args, out))


if __name__ == "__main__":
    main()
