"""Cyclical pruning vs one-shot, GMP and torch.nn.utils.prune at an equal training budget (issue 3, 6b).

For every setup (model on dataset) and seed, one dense model is trained first (the same starting point for every
method); then each method gets exactly the same sparse-training budget — ``epochs`` epochs of SGD + Nesterov
momentum with one cosine learning rate (no warm-up), the project's trainer, no augmentation — and is evaluated on
the test split after BatchNorm re-estimation (where the model has BatchNorm):

* ``one-shot + FT``     — secateurs ``OneShot(prune_step=0)``: prune the dense weights, fine-tune with fixed mask;
* ``torch prune + FT``  — ``torch.nn.utils.prune.global_unstructured(L1Unstructured)`` on the same tensors, fine-tune
  (the external peer), ``prune.remove`` at the end;
* ``GMP cumulative``    — Zhu & Gupta cubic ramp (ρ = 0.75) with monotone masks (no recovery);
* ``GMP re-ranked``     — the same schedule with masks recomputed from scratch (= cyclical with C = 1);
* ``cyclical C=3``      — papers.md defaults: C = 3, ρ = 0.75, s_i = s_restart = 0;
* ``cyclical tuned``    — the best (C, s_restart) of a small grid, chosen on the validation split with seed 0, then
  run on all seeds;
* with ``--extras SETUP``: cyclical C=3 with variant B (shadow) / C (ste) / a per-cycle cosine restart, and GMP
  with variant C.

All secateurs methods use global magnitude ranking (as the torch peer does) and projection (variant A); the mask
is updated every ``update_every`` steps (scaled down from Δt = 50 because the runs are short).

    python benchmarks/cyclical_budget.py [--setups mlp lenet5 cnn1d] [--sparsities 0.9 0.95 0.98 0.99] [--seeds 3]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn

from _common import RESULTS, environment, fmt, mean_std, write_results
from secateurs.data import get_dataset, seeded_batches
from secateurs.models import create_model
from secateurs.schedules import GMP, Cyclical, OneShot
from secateurs.train import Callback, TrainConfig, evaluate, fit
from secateurs.unstructured import CyclicalSparsifier, SparsifierCallback, reestimate_batchnorm, select_prunable

# Sized for a shared 2-core CPU (one thread): a training subset, short dense pre-training, short sparse phase.
SETUPS = {
    "mlp": dict(model="mlp", data="fashion-mnist", train_subset=10000, dense_epochs=5, epochs=3, lr=0.05,
                dense_lr=0.1, weight_decay=1e-4, batch_size=128, update_every=5),
    "lenet5": dict(model="lenet5", data="fashion-mnist", train_subset=5000, dense_epochs=8, epochs=4, lr=0.05,
                   dense_lr=0.05, weight_decay=5e-4, batch_size=128, update_every=4),
    "cnn1d": dict(model="cnn1d", data="mnist1d", train_subset=None, dense_epochs=20, epochs=6, lr=0.05,
                  dense_lr=0.05, weight_decay=5e-4, batch_size=128, update_every=4),
}
TUNE_GRID = [(3, 0.0), (5, 0.0), (3, 0.5)]  # (C, s_restart); (3, 0) is the default
CACHE = Path.home() / ".cache" / "secateurs" / "cyclical_dense"


def _kwargs(data):
    kw = {"num_classes": data.num_classes, "in_channels": data.input_shape[0]}
    if len(data.input_shape) == 3:
        kw["input_size"] = data.input_shape[1]
    return kw


def dense_model(name: str, setup: dict, data, seed: int) -> nn.Module:
    """Train (or load from the local cache) the dense starting point for one seed."""
    torch.manual_seed(seed)
    model = create_model(setup["model"], **_kwargs(data))
    path = CACHE / f"{name}_{setup['data']}_n{setup['train_subset']}_e{setup['dense_epochs']}_s{seed}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model
    cfg = TrainConfig(epochs=setup["dense_epochs"], lr=setup["dense_lr"], batch_size=setup["batch_size"],
                      weight_decay=setup["weight_decay"], warmup_epochs=0.5, augment=False, seed=seed,
                      evaluate_every_epoch=False)
    fit(model, data, cfg, progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


EXTRAS = {  # weight handling / learning-rate options of the [open] list, run with --extras
    "cyclical C=3 shadow": lambda s, T: (Cyclical(s, T, cycles=3), {"variant": "shadow"}),
    "cyclical C=3 ste": lambda s, T: (Cyclical(s, T, cycles=3), {"variant": "ste"}),
    "cyclical C=3 lr-restart": lambda s, T: (Cyclical(s, T, cycles=3), {"_lr_restart": True}),
    "GMP re-ranked ste": lambda s, T: (GMP(s, T), {"variant": "ste"}),
}


def methods(cycles: int = 3, restart: float = 0.0, extras: bool = False) -> dict:
    return {
        "one-shot + FT": lambda s, T: (OneShot(s, T, prune_step=0), {}),
        "torch prune + FT": None,
        "GMP cumulative": lambda s, T: (GMP(s, T), {"cumulative": True}),
        "GMP re-ranked": lambda s, T: (GMP(s, T), {}),
        "cyclical C=3": lambda s, T: (Cyclical(s, T, cycles=3), {}),
        "cyclical tuned": lambda s, T: (Cyclical(s, T, cycles=cycles, restart_sparsity=restart), {}),
        **(EXTRAS if extras else {}),
    }


class _TorchPrune(Callback):
    """Global L1 magnitude pruning with torch.nn.utils.prune before training; made permanent at the end."""

    def __init__(self, model: nn.Module, sparsity: float):
        from torch.nn.utils import prune

        self.targets = [(t.module, t.attr) for t in select_prunable(model)]
        prune.global_unstructured(self.targets, pruning_method=prune.L1Unstructured, amount=sparsity)

    def on_train_end(self, trainer) -> None:
        from torch.nn.utils import prune

        for module, attr in self.targets:
            prune.remove(module, attr)


def run_one(setup: dict, data, dense: nn.Module, method: str, factory, sparsity: float, seed: int) -> dict:
    model = copy.deepcopy(dense)
    cfg = TrainConfig(epochs=setup["epochs"], lr=setup["lr"], batch_size=setup["batch_size"],
                      weight_decay=setup["weight_decay"], warmup_epochs=0, augment=False, seed=seed,
                      evaluate_every_epoch=False)
    t0 = time.perf_counter()
    if factory is None:
        tp = _TorchPrune(model, sparsity)  # before fit: the trainer's optimizer must see weight_orig
        result = fit(model, data, cfg, callbacks=[tp], progress=False)
        recovered, schedule = 0.0, None
        # same BatchNorm treatment as the sparsifier runs: re-estimate, then re-evaluate
        if reestimate_batchnorm(model, _bn_batches(data, cfg), num_batches=50):
            result.accuracy = evaluate(model, data.test_x, data.test_y)["accuracy"]
    else:
        def build(m, total):
            sched, kw = factory(sparsity, total)
            kw.pop("_lr_restart", None)
            # live_outputs off: the committed results were measured before the guard existed
            return CyclicalSparsifier(m, sched, update_every=setup["update_every"], scope="global",
                                      live_outputs=False, **kw)

        lr_restart = factory(sparsity, 10)[1].get("_lr_restart", False)
        cb = SparsifierCallback(build, bn_batches=50, lr_restart=lr_restart)
        result = fit(model, data, cfg, callbacks=[cb], progress=False)
        recovered, schedule = cb.summary["recovered_fraction"], cb.sparsifier.schedule.to_dict()
    weights = [t.param for t in select_prunable(model)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    dead = sum(int(bool((w == 0).all())) for w in weights)  # prunable tensors pruned away entirely
    val = evaluate(model, data.val_x, data.val_y)["accuracy"]
    return {"method": method, "sparsity": sparsity, "seed": seed, "accuracy": result.accuracy,
            "val_accuracy": val, "realised_sparsity": zeros, "recovered_fraction": recovered, "dead_layers": dead,
            "steps": result.steps, "elapsed_s": time.perf_counter() - t0, "schedule": schedule}


def _bn_batches(data, cfg):
    return seeded_batches(data.train_x, batch_size=cfg.batch_size, seed=cfg.seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98, 0.99])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stem", default="cyclical_budget")
    p.add_argument("--extras", nargs="*", default=[], choices=list(SETUPS),
                   help="setups that also run the variant / LR-restart options (EXTRAS)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    partial = RESULTS / f".{args.stem}.partial.json"
    runs: list[dict] = json.loads(partial.read_text()) if partial.is_file() else []
    tuned: dict[str, dict] = {}

    def record(r):
        runs.append(r)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(runs))
        print(f"{r['setup']:7s} s={r['sparsity']:.2f} seed={r['seed']} {r['method']:17s} "
              f"{'' if r.get('tune') is None else str(r['tune']):11s} acc {r['accuracy']:.4f} "
              f"val {r['val_accuracy']:.4f} rec {r['recovered_fraction']:.3f} dead {r.get('dead_layers', 0)} "
              f"{r['elapsed_s']:.1f}s", flush=True)

    def get(setup_name, method, s, seed, tune=None):
        for r in runs:
            if (r["setup"], r["method"], r["sparsity"], r["seed"], json.dumps(r.get("tune"))) == \
                    (setup_name, method, s, seed, json.dumps(tune)):
                return r
        return None

    for name in args.setups:
        setup = SETUPS[name]
        data = get_dataset(setup["data"], train_subset=setup["train_subset"], seed=0)
        denses = {seed: dense_model(name, setup, data, seed) for seed in range(args.seeds)}
        dense_acc = {seed: evaluate(m, data.test_x, data.test_y)["accuracy"] for seed, m in denses.items()}
        print(f"{name}: dense test accuracy {fmt(list(dense_acc.values()))}", flush=True)
        for s in args.sparsities:
            # 1. tune (C, s_restart) on the validation split with seed 0
            scores = {}
            for C, sr in TUNE_GRID:
                tune = [C, sr]
                r = get(name, "cyclical tuned", s, 0, tune)
                if r is None:
                    r = run_one(setup, data, denses[0], "cyclical tuned", methods(C, sr)["cyclical tuned"], s, 0)
                    r.update(setup=name, tune=tune)
                    record(r)
                scores[(C, sr)] = r["val_accuracy"]
            best = max(TUNE_GRID, key=lambda k: (scores[k], -TUNE_GRID.index(k)))
            tuned[f"{name}@{s}"] = {"cycles": best[0], "restart_sparsity": best[1],
                                    "val_accuracy_seed0": {f"C={k[0]},s_r={k[1]}": v for k, v in scores.items()}}
            # 2. every method on every seed
            table = methods(*best, extras=name in args.extras)
            for seed in range(args.seeds):
                for method, factory in table.items():
                    tune = list(best) if method == "cyclical tuned" else None
                    if get(name, method, s, seed, tune) is not None:
                        continue
                    r = run_one(setup, data, denses[seed], method, factory, s, seed)
                    r.update(setup=name, tune=tune)
                    record(r)
        for seed, acc in dense_acc.items():
            if get(name, "dense", 0.0, seed) is None:
                record({"setup": name, "method": "dense", "sparsity": 0.0, "seed": seed, "accuracy": acc,
                        "val_accuracy": evaluate(denses[seed], data.val_x, data.val_y)["accuracy"],
                        "recovered_fraction": 0.0, "elapsed_s": 0.0, "tune": None})

    # ------------------------------------------------------------------------------------------ report
    env = environment(args.threads)
    order = list(methods(extras=True))
    md = ["# Cyclical pruning at an equal training budget (issue 3, 6b)", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores shared with other jobs, "
          f"{args.threads} thread); seeds {list(range(args.seeds))}; test accuracy (%) mean ± std over seeds, "
          "after BatchNorm re-estimation; in brackets the recovered fraction (% of the final mask's kept weights "
          "that were pruned at an earlier mask update).", "",
          "**Budget (reduced to fit a shared 2-core CPU — not the papers' budgets):**", ""]
    for name in args.setups:
        st = SETUPS[name]
        subset = f"first {st['train_subset']:,} images of a seeded permutation" if st["train_subset"] else "all"
        md.append(f"* `{name}` on {st['data']}: training subset {subset}; dense pre-training {st['dense_epochs']} "
                  f"epochs (lr {st['dense_lr']}); then **{st['epochs']} epochs for every method** (lr {st['lr']}, "
                  f"one cosine, batch {st['batch_size']}, weight decay {st['weight_decay']}, no augmentation); "
                  f"mask update every {st['update_every']} steps; global magnitude ranking.")
    if args.extras:
        md += ["", f"Extra rows for {', '.join(args.extras)} (options from the [open] list, defaults otherwise): "
                   "`shadow` = forward mask with stale pruned weights (variant B), `ste` = forward mask with "
                   "straight-through gradient (variant C), `lr-restart` = the cosine learning rate restarts at "
                   "every cycle."]
    md += ["", "† n: in n of the seeds at least one prunable tensor ended entirely zero (a layer pruned away — the "
               "global ranking's failure mode; see the notes below).", "",
           f"Tuned cyclical: (C, s_restart) from {[tuple(g) for g in TUNE_GRID]}, best validation accuracy with "
               "seed 0, per setup and sparsity (choice in brackets).", ""]
    rows = []
    for name in args.setups:
        dense = [r["accuracy"] for r in runs if r["setup"] == name and r["method"] == "dense"]
        md += [f"## {name} on {SETUPS[name]['data']} (dense {fmt(dense)})", "",
               "| method | " + " | ".join(f"s = {s:g}" for s in args.sparsities) + " |",
               "|---|" + "---|" * len(args.sparsities)]
        for method in order:
            cells = []
            for s in args.sparsities:
                t = tuned.get(f"{name}@{s}")
                tune = [t["cycles"], t["restart_sparsity"]] if method == "cyclical tuned" and t else None
                sel = [r for r in runs if r["setup"] == name and r["method"] == method and r["sparsity"] == s
                       and json.dumps(r.get("tune")) == json.dumps(tune) and r["seed"] < args.seeds]
                if not sel:
                    cells.append("—")
                    continue
                acc = [r["accuracy"] for r in sel]
                rec = mean_std([r["recovered_fraction"] for r in sel])[0]
                extra = f" [C={tune[0]}, s_r={tune[1]:g}]" if tune else ""
                dead = sum(r.get("dead_layers", 0) > 0 for r in sel)
                extra += f" †{dead}" if dead else ""
                cells.append(f"{fmt(acc)} ({rec * 100:.0f}){extra}")
                rows.append({"setup": name, "method": method, "sparsity": s, "tune": tune, "seeds": len(sel),
                             "accuracy_mean": mean_std(acc)[0], "accuracy_std": mean_std(acc)[1],
                             "recovered_fraction_mean": rec, "runs_with_dead_layers": dead,
                             "realised_sparsity": [r.get("realised_sparsity") for r in sel]})
            if all(cell == "—" for cell in cells):
                continue
            md.append(f"| {method} | " + " | ".join(cells) + " |")
        md.append("")
    md += ["## Notes", "",
           "* `one-shot + FT` and `torch prune + FT` select the same global-magnitude mask and fine-tune it; they agree "
           "to the last digit (small differences come from tie-breaking), a cross-check of the sparsifier against "
           "`torch.nn.utils.prune`.",
           "* `GMP cumulative` and `GMP re-ranked` coincide almost everywhere: with projection a pruned weight is "
           "0 + one gradient step when the masks are re-ranked, which rarely beats a kept weight.",
           "* With projection (variant A) a restart admits pruned weights at value 0; within a short cycle they rarely "
           "grow past the weights that stayed, hence the small recovered fractions. Variants B/C recover many "
           "more weights (bracketed %), but more recovery did not mean higher accuracy here.",
           "* † Global ranking compares magnitudes across layers; behind BatchNorm (cnn1d) the scale of a layer is "
           "arbitrary and the weights regrown after a dense restart can outgrow another layer's, so a whole layer "
           "(typically the classifier) is pruned away and accuracy falls to chance.", ""]
    payload = {"environment": env, "settings": {"setups": {k: SETUPS[k] for k in args.setups},
                                                "sparsities": args.sparsities, "seeds": list(range(args.seeds)),
                                                "tune_grid": TUNE_GRID, "scope": "global", "variant": "project"},
               "tuned": tuned, "rows": rows, "runs": runs, "elapsed_s": time.perf_counter() - t_start}
    write_results(args.stem, payload, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
