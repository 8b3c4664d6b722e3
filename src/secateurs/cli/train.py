"""``secateurs train``: train a dense model from the zoo (or a user factory) and save a checkpoint."""
from __future__ import annotations

import argparse

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a dense model and save a checkpoint",
                       description="Train a model on a dataset and write DIR/model.safetensors, model.json "
                                   "and summary.json (accuracy, params, macs, epochs, elapsed_s).",
                       epilog="Prints one line per epoch (train loss and accuracy on the augmented training batches, "
                              "val_acc on the held-out validation split, images/s, seconds), then: test accuracy "
                              "(0-1), params, MACs (multiply-accumulates per image; FLOPs = 2*MACs), epochs and "
                              "wall time. Every summary.json field: docs/summary.md.")
    p.add_argument("--model", required=True, metavar="M",
                   help="zoo name (list: `secateurs info --models`), package.module:factory, torchvision:NAME, "
                        "timm:NAME")
    c.add_data_args(p)
    c.add_train_args(p)
    c.add_run_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import distributed
    from ..flops import count_model
    from ..io import save

    c.check_out(args)
    c.setup_threads(args)
    distributed.init_from_env()
    data = c.load_data(args)
    torch.manual_seed(args.seed)
    model, spec = c.make_model(args.model, data)
    config = c.train_config(args)
    result = c.run_trainer(args, c.make_trainer(args, model, data, config))
    cost = count_model(model, data.input_shape)
    summary = {
        "command": "train", "model": args.model, "dataset": data.name,
        "accuracy": result.accuracy, "test_loss": result.loss,
        "params": cost.params, "macs": cost.macs, "flops": cost.flops,
        "epochs": result.epochs, "steps": result.steps, "elapsed_s": result.elapsed_s,
        "seconds_per_epoch": result.seconds_per_epoch, "train_images_per_s": result.train_images_per_s,
        "config": vars(config) if not hasattr(config, "__dataclass_fields__") else
        {k: getattr(config, k) for k in config.__dataclass_fields__},
        "history": result.history, "versions": c.versions(),
        "world_size": distributed.world_size(),
    }
    if distributed.is_main():
        save(args.out, model, spec, summary, overwrite=args.overwrite)
        print(f"{args.model} on {data.name}: accuracy {result.accuracy:.4f}, {cost.params:,} params, "
              f"{cost.macs / 1e6:.2f} M MACs, {result.epochs:g} epochs in {result.elapsed_s:.1f}s -> {args.out}")
    distributed.shutdown()
    return 0
