"""Accuracy of 2:4 semi-structured vs unstructured 50 % sparsity (one-shot, GMP, cyclical) on Fashion-MNIST.

For each setup and seed one dense model is trained (the same starting point for every method); each method then
gets exactly the same sparse-training budget: ``epochs`` epochs of SGD + Nesterov momentum with one cosine learning
rate (no warm-up, no augmentation), masks updated every ``update_every`` steps, **per-layer** magnitude ranking
(an N:M pattern is chosen row by row, so the unstructured runs use per-layer ranking too) and projection
(variant A). Sparsity is 50 % of every conv/linear weight in both cases; 2:4 adds the constraint that at most 2
of every 4 consecutive input weights of a row survive. How a schedule maps onto the pattern: the schedule's
value sets the fraction of rows under 2:4 (docs/cyclical.md).

The budget is far below a real recipe (CPU only, shared): LeNet-300-100 trains 5 dense + 3 sparse epochs on a
10,000-image subset, LeNet-5 8 + 4 epochs on 5,000 images; 3 seeds; test accuracy on the full 10,000-image test set.
The 2:4 speed-up on sparse tensor cores is ``semi_structured_speed.py``'s (run on a lent GPU).

    python benchmarks/nm_accuracy.py [--setups mlp lenet5] [--seeds 3]
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch
from torch import nn

from _common import environment, fmt, write_results
from secateurs.data import get_dataset
from secateurs.models import create_model
from secateurs.schedules import GMP, Cyclical, OneShot
from secateurs.train import TrainConfig, fit
from secateurs.unstructured import CyclicalSparsifier, Pattern, SparsifierCallback, is_nm, select_prunable

SETUPS = {
    "mlp": dict(model="mlp", train_subset=10000, dense_epochs=5, epochs=3, lr=0.05, dense_lr=0.1,
                weight_decay=1e-4, batch_size=128, update_every=5),
    "lenet5": dict(model="lenet5", train_subset=5000, dense_epochs=8, epochs=4, lr=0.05, dense_lr=0.05,
                   weight_decay=5e-4, batch_size=128, update_every=4),
}
METHODS = {  # name -> (schedule factory, pattern)
    "one-shot + FT, unstructured": (lambda T: OneShot(0.5, T), None),
    "one-shot + FT, 2:4": (lambda T: OneShot(0.5, T), "2:4"),
    "GMP, unstructured": (lambda T: GMP(0.5, T), None),
    "GMP, 2:4": (lambda T: GMP(0.5, T), "2:4"),
    "cyclical C=3, unstructured": (lambda T: Cyclical(0.5, T, cycles=3), None),
    "cyclical C=3, 2:4": (lambda T: Cyclical(0.5, T, cycles=3), "2:4"),
}


def _config(setup: dict, seed: int, dense: bool) -> TrainConfig:
    return TrainConfig(epochs=setup["dense_epochs" if dense else "epochs"], lr=setup["dense_lr" if dense else "lr"],
                       batch_size=setup["batch_size"], weight_decay=setup["weight_decay"],
                       warmup_epochs=0.5 if dense else 0, augment=False, seed=seed, evaluate_every_epoch=False)


def dense_model(setup: dict, data, seed: int) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    model = create_model(setup["model"], num_classes=data.num_classes, in_channels=data.input_shape[0],
                         input_size=data.input_shape[1])
    result = fit(model, data, _config(setup, seed, dense=True), progress=False)
    return model, result.accuracy


def run_one(setup: dict, data, dense: nn.Module, method: str, seed: int) -> dict:
    factory, pattern = METHODS[method]
    model = copy.deepcopy(dense)
    t0 = time.perf_counter()

    def build(m, total):
        # live_outputs off: the committed results were measured before the guard existed (a pattern has none)
        return CyclicalSparsifier(m, factory(total), update_every=setup["update_every"], scope="layer",
                                  pattern=pattern, live_outputs=False)

    cb = SparsifierCallback(build, bn_batches=0)
    result = fit(model, data, _config(setup, seed, dense=False), callbacks=[cb], progress=False)
    weights = [t.param.detach() for t in select_prunable(model)]
    return {"method": method, "seed": seed, "accuracy": result.accuracy, "sparsity": cb.summary["sparsity"],
            "is_2_4": all(is_nm(w, Pattern(2, 4)) for w in weights), "steps": result.steps,
            "elapsed_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--stem", default="nm_accuracy")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start, load_before = time.time(), os.getloadavg()
    runs = []
    for name in args.setups:
        setup = SETUPS[name]
        data = get_dataset("fashion-mnist", train_subset=setup["train_subset"])
        for seed in range(args.seeds):
            dense, dense_acc = dense_model(setup, data, seed)
            runs.append({"setup": name, "method": "dense", "seed": seed, "accuracy": dense_acc, "sparsity": 0.0})
            for method in METHODS:
                r = {"setup": name, **run_one(setup, data, dense, method, seed)}
                runs.append(r)
                print(f"{name} s{seed} {method}: {100 * r['accuracy']:.2f}% sparsity {r['sparsity']:.4f} "
                      f"2:4={r['is_2_4']}", flush=True)
    payload = {"environment": environment(1), "setups": {k: SETUPS[k] for k in args.setups}, "seeds": args.seeds,
               "load_before": load_before, "load_after": os.getloadavg(), "elapsed_s": time.time() - start,
               "runs": runs}
    write_results(args.stem, payload, markdown(payload))


def markdown(p: dict) -> str:
    env = p["environment"]
    out = ["# 2:4 semi-structured vs unstructured 50 % sparsity (issue 13)\n",
           f"torch {env['torch']}, {env['cpu']}, 1 thread, {env['date']}; load average {p['load_before'][0]:.2f} "
           f"before, {p['load_after'][0]:.2f} after; {p['seeds']} seeds (mean ± std); {p['elapsed_s']:.0f} s. "
           "Fashion-MNIST test accuracy (%). Reduced budget: " + "; ".join(
               f"{k}: {s['dense_epochs']} dense + {s['epochs']} sparse epochs on {s['train_subset']:,} training "
               f"images" for k, s in p["setups"].items()) + ". Per-layer ranking, projection, one cosine LR. "
           "Sparsity is of the conv/linear weights (a 2:4 conv row whose length is not a multiple of 4 keeps its "
           "short last group, e.g. LeNet-5's first conv rows of 25 keep 13). The sparse rows trained the sparse "
           "epochs on top of the dense ones, so compare 2:4 with unstructured, not with the dense row. "
           "GPU speed-up: benchmarks/results/semi_structured_speed_cuda.md.\n",
           "| method | " + " | ".join(p["setups"]) + " | sparsity | all weights 2:4 |",
           "|---|" + "---|" * len(p["setups"]) + "---|---|"]
    for method in ["dense", *METHODS]:
        cells, spars, nm = [], [], []
        for setup in p["setups"]:
            rs = [r for r in p["runs"] if r["setup"] == setup and r["method"] == method]
            cells.append(fmt([r["accuracy"] for r in rs]))
            spars += [r["sparsity"] for r in rs]
            nm += [r.get("is_2_4") for r in rs]
        sp = "/".join(f"{s:.4f}" for s in sorted(set(round(x, 4) for x in spars)))
        out.append(f"| {method} | " + " | ".join(cells) + f" | {sp} | "
                   + ("-" if method == "dense" else "yes" if all(nm) else "no") + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
