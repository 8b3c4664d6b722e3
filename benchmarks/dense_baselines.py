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


def steady_state_seconds_per_epoch(name: str, data_name: str, threads: int, batches: int = 20,
                                   batch_size: int = 128) -> dict:
    """Training throughput on random batches after warm-up, for a quiet-machine s/epoch figure.

    The accuracy runs may share the CPU with other jobs; this short measurement is taken on its own, with the
    load average recorded, so the seconds-per-epoch column means something.
    """
    import os
    import time

    import torch.nn.functional as F

    from secateurs.data import get_dataset
    from secateurs.models import create_model

    torch.set_num_threads(threads)
    data = get_dataset(data_name)
    kwargs = {"num_classes": data.num_classes, "in_channels": data.input_shape[0]}
    if len(data.input_shape) == 3:
        kwargs["input_size"] = data.input_shape[1]
    model = create_model(name, **kwargs).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, *data.input_shape)
    y = torch.randint(0, data.num_classes, (batch_size,))
    load_before = os.getloadavg()[0]
    times = []
    for i in range(batches + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    per_batch = times[len(times) // 2]
    return {"images_per_s": batch_size / per_batch,
            "seconds_per_epoch": len(data.train_x) / batch_size * per_batch,
            "load_average_before": load_before, "threads": threads, "batches": batches}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["lenet5", "resnet20", "resnet56"])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true", help="retrain even when a cached checkpoint exists")
    p.add_argument("--no-timing", action="store_true", help="skip the steady-state throughput measurement")
    p.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs (say so in --note)")
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on N images of the training split (a reduced run; say so in --note)")
    p.add_argument("--stem", default="dense_baselines", help="results file name (keep earlier tables)")
    p.add_argument("--note", default="", help="circumstances of the accuracy runs, copied into the markdown")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        path = checkpoint_dir(name, args.data, args.seed)
        cached = (path / "summary.json").is_file()
        if cached and not args.force and (args.epochs or args.train_subset):
            p.error(f"--epochs/--train-subset: {path} is already cached and would be used as is; pass --force to "
                    "retrain it (it replaces the checkpoint every pruning benchmark starts from)")
        if args.force or not cached:
            print(f"training {name} on {args.data} (seed {args.seed}) ...", flush=True)
            overrides = {"epochs": args.epochs} if args.epochs else {}
            train_dense(name, args.data, args.seed, threads=args.threads, train_subset=args.train_subset,
                        **overrides)
            path = checkpoint_dir(name, args.data, args.seed)
        s = json.loads((path / "summary.json").read_text())
        rows.append({k: s.get(k) for k in ("model", "dataset", "seed", "accuracy", "val_accuracy", "params", "macs",
                                            "epochs", "seconds_per_epoch", "train_images_per_s", "recipe",
                                            "train_images")}
                    | {"checkpoint": str(path)})
        print(f"{name}: accuracy {s['accuracy']:.4f}, {s['seconds_per_epoch']:.1f} s/epoch", flush=True)
    for row in rows:
        if not args.no_timing:
            row["steady_state"] = steady_state_seconds_per_epoch(row["model"], args.data, args.threads)
    env = environment(args.threads)
    md = ["# Dense baselines (fashion-mnist, default recipe)", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores), seed {args.seed}; steady-state timing with "
          f"{args.threads} threads.", *([f"Accuracy runs: {args.note}"] if args.note else []),
          "Recipe: SGD + Nesterov momentum 0.9, cosine LR with 1 warm-up epoch, random crop (pad 2), batch 128; "
          "5,000 training images held out for validation. Epoch counts are sized for a 2-core CPU.", "",
          "The `s/epoch (run)` column is the wall time of the accuracy run itself, which shared the 2 CPU cores "
          "with other jobs; `s/epoch (steady)` is a separate throughput measurement (median of 20 training steps "
          "of batch 128 after warm-up) with the load average before it recorded in the JSON.", "",
          "| model | test acc (%) | val acc (%) | params | MACs (M) | train images | epochs | s/epoch (run) |"
          " s/epoch (steady, full split) | img/s (steady) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        val = f"{r['val_accuracy'] * 100:.2f}" if r.get("val_accuracy") is not None else "-"
        images = f"{r['train_images']:,}" if r.get("train_images") else "full split"
        md.append(f"| {r['model']} | {r['accuracy'] * 100:.2f} | {val} | {r['params']:,} | {r['macs'] / 1e6:.2f} | "
                  f"{images} | {r['epochs']:g} | {r['seconds_per_epoch']:.1f} | "
                  f"{_steady(r, 'seconds_per_epoch', 1)} | {_steady(r, 'images_per_s', 0)} |")
    write_results(args.stem, {"environment": env, "recipes": RECIPES, "rows": rows}, "\n".join(md) + "\n")


def _steady(row: dict, key: str, digits: int) -> str:
    st = row.get("steady_state")
    return f"{st[key]:.{digits}f}" if st else "-"


if __name__ == "__main__":
    main()
