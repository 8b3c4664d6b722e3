"""Dense baselines on fashion-mnist with the default recipe: test accuracy and seconds per epoch.

These checkpoints are the starting point of every pruning benchmark; they are cached (see _common.py) so
the pruning benchmarks never retrain them. ``--force`` retrains.

    python benchmarks/dense_baselines.py [--models lenet5 resnet20 resnet56] [--threads 2]
"""
from __future__ import annotations

import argparse
import json

import torch

from _common import RECIPES, checkpoint_dir, environment, train_dense, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["lenet5", "resnet20", "resnet56"])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true", help="retrain even when a cached checkpoint exists")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        path = checkpoint_dir(name, args.data, args.seed)
        if args.force or not (path / "summary.json").is_file():
            print(f"training {name} on {args.data} (seed {args.seed}) ...", flush=True)
            train_dense(name, args.data, args.seed, threads=args.threads)
            path = checkpoint_dir(name, args.data, args.seed)
        s = json.loads((path / "summary.json").read_text())
        rows.append({k: s.get(k) for k in ("model", "dataset", "seed", "accuracy", "val_accuracy", "params", "macs",
                                            "epochs", "seconds_per_epoch", "train_images_per_s", "recipe")}
                    | {"checkpoint": str(path)})
        print(f"{name}: accuracy {s['accuracy']:.4f}, {s['seconds_per_epoch']:.1f} s/epoch", flush=True)
    env = environment(args.threads)
    md = ["# Dense baselines (fashion-mnist, default recipe)", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores, {args.threads} threads), seed {args.seed}.",
          "Recipe: SGD + Nesterov momentum 0.9, cosine LR with 1 warm-up epoch, random crop (pad 2), batch 128; "
          "5,000 training images held out for validation. Epoch counts are sized for a 2-core CPU.", "",
          "| model | test acc (%) | val acc (%) | params | MACs (M) | epochs | s/epoch | train img/s |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        val = f"{r['val_accuracy'] * 100:.2f}" if r.get("val_accuracy") is not None else "-"
        md.append(f"| {r['model']} | {r['accuracy'] * 100:.2f} | {val} | {r['params']:,} | {r['macs'] / 1e6:.2f} | "
                  f"{r['epochs']:g} | {r['seconds_per_epoch']:.1f} | {r['train_images_per_s']:.0f} |")
    write_results("dense_baselines", {"environment": env, "recipes": RECIPES, "rows": rows}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
