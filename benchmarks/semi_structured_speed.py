"""What 2:4 sparsity buys on a GPU: ``secateurs.sparse.to_semi_structured`` timed against the same dense model.

Per model (stacks of ``nn.Linear`` with ReLU between, random weights: speed depends on shapes, not values; the
accuracy cost of 2:4 is ``nm_accuracy.py``'s) every weight gets the 2:4 magnitude mask
(``secateurs.unstructured.nm_keep``, the mask ``sparsify --pattern 2:4`` trains). Two copies: *forced* —
``to_semi_structured(measure=False)``, every eligible layer converted untimed (what the kernels give) — and
*measured* — ``to_semi_structured(example=x)`` at that batch, each layer converted only where timed faster (the
library's default). Dense, forced and measured run on ``--batches`` rows of input, timed interleaved in one
process (``secateurs.timing.time_models``, ``torch.cuda.synchronize`` around every block). Reported: the layers
converted, the dense ms per call, forced / dense and measured / dense (median over rounds of the per-round ratio),
and the forced copy's largest output difference relative to the output's scale (the kernels reorder the sums).
``--backend cutlass`` forces PyTorch's CUTLASS kernels instead of cuSPARSELt.

    python benchmarks/semi_structured_speed.py [--models ...] [--batches 1 64 512 4096] [--backend cutlass]

On a machine without a supported GPU every layer stays dense (the fallback) and the ratio is ~1: the run says so.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from _common import environment, write_results

# name -> layer widths: a transformer's feed-forward block at model width 1024, 4096 and 8192, and LeNet-300-100 (whose
# 300- and 100-row layers are not multiples of the kernels' tile: the honest fallback case)
MODELS = {"ffn-1k": [1024, 4096, 1024], "ffn-4k": [4096, 16384, 4096], "ffn-8k": [8192, 32768, 8192],
          "lenet300": [784, 300, 100, 10]}


def build(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def main() -> None:
    import copy

    from secateurs.cost.latency_profile import device_name
    from secateurs.sparse import to_semi_structured
    from secateurs.sparse.semi_structured import semi_structured_support
    from secateurs.timing import time_models
    from secateurs.unstructured import Pattern, nm_keep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64, 512, 4096])
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    ap.add_argument("--budget-s", type=float, default=1.0, help="seconds of interleaved timing per row")
    ap.add_argument("--backend", default="default", choices=["default", "cutlass"],
                    help="cutlass: SparseSemiStructuredTensor._FORCE_CUTLASS (default: PyTorch's choice)")
    ap.add_argument("--stem", default="semi_structured_speed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.backend == "cutlass":
        torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS = True
    ok, why = semi_structured_support()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    env = environment(1) | {"device_name": device_name(device), "semi_structured_support": [ok, why]}
    if ok:
        env["cusparselt"] = bool(getattr(torch.backends, "cusparselt", None) and torch.backends.cusparselt.is_available())
        env["forced_cutlass"] = bool(getattr(torch.sparse.SparseSemiStructuredTensor, "_FORCE_CUTLASS", False))
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        dense = build(MODELS[name]).to(device=device, dtype=dtype).eval()
        with torch.no_grad():
            for m in dense.modules():
                if isinstance(m, nn.Linear):
                    m.weight.mul_(nm_keep(m.weight.abs().float(), Pattern(2, 4)).to(m.weight.dtype))
        forced = copy.deepcopy(dense)
        choices = to_semi_structured(forced, measure=False)
        for batch in args.batches:
            x = torch.randn(batch, MODELS[name][0], generator=torch.Generator().manual_seed(batch)).to(device, dtype)
            measured = copy.deepcopy(dense)
            picked = to_semi_structured(measured, example=x)
            with torch.inference_mode():
                ref, out = dense(x).float(), forced(x).float()
            rel = ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
            t = time_models([dense, forced, measured], x, budget_s=args.budget_s)
            row = {"model": name, "widths": MODELS[name], "batch": batch, "dtype": args.dtype,
                   "backend": args.backend, "converted": [c.name for c in choices if c.converted],
                   "not_converted": {c.name: c.reason for c in choices if not c.converted},
                   "measured_choices": [c.to_dict() for c in picked],
                   "dense_ms": t.ms[0], "forced_ms": t.ms[1], "measured_ms": t.ms[2], "ratio": t.ratios[1],
                   "measured_ratio": t.ratios[2], "max_rel_diff": rel,
                   "timing": t.setting(batch_size=batch, runtime="torch", dtype=args.dtype)}
            rows.append(row)
            print(f"{name:9s} b{batch:<5d} forced {len(row['converted'])}/{len(choices)}: dense "
                  f"{row['dense_ms']:.4f} ms, forced/dense {row['ratio']:.3f}, measured "
                  f"{sum(c.converted for c in picked)}/{len(picked)} converted, measured/dense "
                  f"{row['measured_ratio']:.3f}, max rel diff {rel:.2e}", flush=True)
            del measured
            env_now = env | {"loadavg_end": os.getloadavg(), "elapsed_s": time.perf_counter() - start}
            write_results(args.stem, {"environment": env_now, "args": vars(args), "rows": rows},
                          markdown(env_now, args, rows))
        del dense, forced
        if device.type == "cuda":
            torch.cuda.empty_cache()


def markdown(env, args, rows) -> str:
    ok, why = env["semi_structured_support"]
    md = ["# 2:4 semi-structured sparsity on a GPU: speed of `to_semi_structured` vs dense", "",
          f"torch {env['torch']}, {env['device_name']} ({'supported: ' + why if ok else 'NOT supported: ' + why}), "
          f"cuSPARSELt available: {env.get('cusparselt', 'n/a')}; host {env['cpu']} ({env['cpu_count']} cores); "
          f"{args.dtype}, backend {args.backend}; {env['date']}; load average {env['loadavg_start'][0]:.2f} before, "
          f"{env['loadavg_end'][0]:.2f} after; {env['elapsed_s']:.0f} s. Random weights with the 2:4 magnitude mask "
          "on every Linear; dense and semi-structured copies timed interleaved (`secateurs.timing`, CUDA synchronised "
          f"around every block, ~{args.budget_s:g} s per row); *sparse/dense*: median over rounds of the per-round "
          "ratio (below 1 = faster). *Forced*: every eligible layer converted untimed (`measure=False`); "
          "*measured*: `to_semi_structured(example=x)` at that batch, the library's default.", "",
          "| model | widths | batch | forced: layers | dense ms | forced / dense | measured: layers converted "
          "| measured / dense | forced max rel. output diff |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = len(r["converted"]) + len(r["not_converted"])
        picked = sum(c["converted"] for c in r["measured_choices"])
        md.append(f"| {r['model']} | {'-'.join(map(str, r['widths']))} | {r['batch']} | {len(r['converted'])}/{n} | "
                  f"{r['dense_ms']:.4f} | {r['ratio']:.3f} | {picked}/{n} | {r['measured_ratio']:.3f} | "
                  f"{r['max_rel_diff']:.1e} |")
    reasons = {f"{r['model']} {k}": v for r in rows for k, v in r["not_converted"].items()}
    if reasons:
        md += ["", "Layers left dense, and why (`to_semi_structured`'s own report):", ""]
        md += [f"- {k}: {v}" for k, v in reasons.items()]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
