"""Cyclical pruning on sparse linear regression (papers.md §1, "Linear-model experiment").

y = X w* + ε, X ∈ R^{n×d}, X_ij ~ N(0, 1/n), d = 1000, k = 50 non-zeros (95 % sparsity) drawn N(0, 1) at random
positions, σ_ε = 0.01, n ∈ {200, 300, 500}. Every method is plain gradient descent on ½‖Xw − y‖² with step
1/‖X‖₂² for 3000 steps from w = 0, on a bias-free ``nn.Linear(d, 1)`` driven by torch.optim.SGD (the 20 seeds
run side by side as 20 independent layers, see :class:`Seeds`), and every method *is* secateurs' own
:class:`CyclicalSparsifier` with a different schedule/option:

* one-shot + retrain — ``OneShot(prune_step=1000)``: 1000 dense steps, prune to k, 2000 steps with the mask fixed;
* GMP cumulative — ``GMP(ramp=0.75)``, ``cumulative=True`` (masks only shrink: the no-recovery baseline);
* GMP re-ranked — same schedule, masks recomputed from scratch (``Cyclical(C=1)``);
* cyclical — ``Cyclical(C=3, ramp=0.75, s_restart=0)`` (papers.md defaults), and C=5;
* IHT (reference) — ``OneShot(prune_step=0)``, ``update_every=1``, ``freeze_final=False``: w ← H_k(w − η∇f).

Δt = 50 for the schedule-driven methods. Metrics: support recovery |supp(ŵ) ∩ supp(w*)| / k and relative error
‖ŵ − w*‖ / ‖w*‖ of the finalized weights; mean ± std over 20 seeds.

    python benchmarks/cyclical_linear.py [--seeds 20] [--steps 3000]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from _common import environment, fmt, mean_std, write_results
from secateurs.schedules import GMP, Cyclical, OneShot
from secateurs.unstructured import CyclicalSparsifier

D, K, SIGMA = 1000, 50, 0.01


def methods(steps: int) -> dict[str, dict]:
    s = 1 - K / D
    return {
        "one-shot + retrain": dict(schedule=OneShot(s, steps, prune_step=steps // 3)),
        "GMP cumulative": dict(schedule=GMP(s, steps), cumulative=True),
        "GMP re-ranked": dict(schedule=GMP(s, steps)),
        "cyclical C=3": dict(schedule=Cyclical(s, steps, cycles=3)),
        "cyclical C=5": dict(schedule=Cyclical(s, steps, cycles=5)),
        "IHT (reference)": dict(schedule=OneShot(s, steps, prune_step=0), update_every=1, freeze_final=False),
    }


def problem(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g) / n ** 0.5
    w = torch.zeros(D)
    w[torch.randperm(D, generator=g)[:K]] = torch.randn(K, generator=g)
    y = x @ w + SIGMA * torch.randn(n, generator=g)
    return x, y, w


class Seeds(nn.Module):
    """One bias-free ``nn.Linear(d, 1)`` per seed, run together: ``forward`` is a batched matmul over seeds.

    The seeds share nothing — each loss term involves only its own layer, each layer has its own learning rate
    (optimizer param group) and, with ``scope="layer"``, its own mask of exactly k non-zeros — so this is the
    single-seed experiment repeated, with the Python overhead of a step paid once for all seeds.
    """

    def __init__(self, count: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(D, 1, bias=False) for _ in range(count))
        for layer in self.layers:
            nn.init.zeros_(layer.weight)

    def forward(self, x):  # x: (seeds, n, d) -> (seeds, n)
        w = torch.stack([layer.weight[0] for layer in self.layers])
        return torch.bmm(x, w.unsqueeze(2)).squeeze(2)


def run_seeds(n: int, seeds: list[int], steps: int, spec: dict) -> list[dict]:
    probs = [problem(n, s) for s in seeds]
    x = torch.stack([p[0] for p in probs])
    y = torch.stack([p[1] for p in probs])
    model = Seeds(len(seeds))
    groups = [{"params": [layer.weight], "lr": 1.0 / torch.linalg.matrix_norm(p[0], 2).item() ** 2}
              for layer, p in zip(model.layers, probs)]
    opt = torch.optim.SGD(groups, lr=1.0)
    spec = dict(spec)
    sp = CyclicalSparsifier(model, spec.pop("schedule"), update_every=spec.pop("update_every", 50), scope="layer",
                            optimizer=opt, **spec)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        (0.5 * (model(x) - y).pow(2).sum()).backward()
        opt.step()
    sp.finalize()
    out = []
    for i, (layer, (_, _, w_true)) in enumerate(zip(model.layers, probs)):
        w = layer.weight.detach()[0]
        name = f"layers.{i}.weight"
        kept, ever = sp.masks[name], sp.ever_pruned[name]
        out.append({"seed": seeds[i], "support_recovery": int(((w != 0) & (w_true != 0)).sum()) / K,
                    "relative_error": float(torch.linalg.vector_norm(w - w_true) / torch.linalg.vector_norm(w_true)),
                    "nonzeros": int((w != 0).sum()),
                    "recovered_fraction": int((kept & ever).sum()) / int(kept.sum())})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--ns", type=int, nargs="+", default=[200, 300, 500])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    table = methods(args.steps)
    rows = []
    for n in args.ns:
        for name, spec in table.items():
            runs = run_seeds(n, list(range(args.seeds)), args.steps, spec)
            metrics = [m for m in runs[0] if m != "seed"]
            row = {"n": n, "method": name, "runs": runs,
                   **{f"{m}_mean": mean_std([r[m] for r in runs])[0] for m in metrics},
                   **{f"{m}_std": mean_std([r[m] for r in runs])[1] for m in metrics}}
            rows.append(row)
            print(f"n={n} {name:20s} support {fmt([r['support_recovery'] for r in runs])}  "
                  f"rel.err {fmt([r['relative_error'] for r in runs], 1, 4)}", flush=True)
    settings = {"d": D, "k": K, "sigma": SIGMA, "steps": args.steps, "ns": args.ns, "seeds": list(range(args.seeds)),
                "update_every": 50, "optimizer": "SGD(lr=1/||X||_2^2 per seed), float32, w0 = 0", "scope": "layer (one layer per seed)",
                "methods": {k: {kk: (vv.to_dict() if hasattr(vv, "to_dict") else vv) for kk, vv in v.items()}
                            for k, v in table.items()}}
    env = environment(args.threads)
    md = ["# Cyclical pruning — sparse linear regression (papers.md §1)", "",
          f"d = {D}, k = {K} (95 % sparse), σ = {SIGMA}, X_ij ~ N(0, 1/n), w*_i ~ N(0, 1) on a random support; "
          f"gradient descent, step 1/‖X‖², {args.steps} steps from w = 0 for every method; Δt = 50; "
          f"{args.seeds} seeds (mean ± std). Every method runs through `CyclicalSparsifier` on an `nn.Linear`.",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores, {args.threads} thread); "
          f"total {time.perf_counter() - t0:.0f} s.", "",
          "Support recovery = |supp(ŵ) ∩ supp(w*)| / k (%); relative error = ‖ŵ − w*‖ / ‖w*‖; "
          "recovered = kept weights of the final mask that were pruned at an earlier mask update (%).", ""]
    for metric, title, scale, digits in (("support_recovery", "support recovery (%)", 100, 1),
                                         ("relative_error", "relative error", 1, 4),
                                         ("recovered_fraction", "recovered fraction (%)", 100, 1)):
        md += [f"### {title}", "", "| method | " + " | ".join(f"n = {n}" for n in args.ns) + " |",
               "|---|" + "---|" * len(args.ns)]
        for name in table:
            cells = [fmt([r[metric] for r in row["runs"]], scale, digits)
                     for n in args.ns for row in rows if row["n"] == n and row["method"] == name]
            md.append(f"| {name} | " + " | ".join(cells) + " |")
        md.append("")
    write_results("cyclical_linear", {"environment": env, "settings": settings, "rows": rows,
                                      "elapsed_s": time.perf_counter() - t0}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
