"""``secateurs finetune``: train any checkpoint further — dense, structurally pruned or sparse — and save it.

A pruned checkpoint is rebuilt from its plan and stays pruned (same ``model.json`` plan). A sparse checkpoint
(``model.json`` has ``sparsity``) keeps its zeros: the weights that are exactly zero in the sparsified tensors
when fine-tuning starts are projected back to zero after every optimizer step, so the sparsity is unchanged.
"""
from __future__ import annotations

import argparse

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint (pruned or sparse: the structure and zeros stay)",
                       description="Fine-tune a checkpoint and write DIR with the same architecture (and plan), "
                                   "summary.json with the test `accuracy` after and `accuracy_before` fine-tuning. "
                                   "A sparse checkpoint's exact zeros stay zero.",
                       epilog="Prints the test accuracy before -> after fine-tuning (and the sparsity, for a sparse "
                              "checkpoint). Every summary.json field: docs/summary.md.")
    p.add_argument("--checkpoint", required=True, type=c.existing_dir("--checkpoint"), metavar="DIR",
                   help="checkpoint to fine-tune (dense, pruned or sparse)")
    c.add_data_args(p)
    c.add_train_args(p, epochs=10, lr=0.01, warmup=0.0)
    c.add_distill_args(p.add_argument_group("distillation"), "--distill-from")
    c.add_run_args(p)
    c.add_trust_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import distributed
    from ..flops import count_model
    from ..io import save
    from ..train import evaluate
    from ..unstructured.keep_zeros import KeepZeros, zero_masks

    c.check_out(args)
    c.setup_threads(args)
    distributed.init_from_env()
    data = c.load_data(args)
    ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
    c.check_compatible(ckpt, data)
    model, spec = ckpt.model, ckpt.spec
    torch.manual_seed(args.seed)
    before = evaluate(model, data.test_x, data.test_y)
    try:
        masks = zero_masks(model, spec.sparsity)
    except AttributeError as e:
        raise c.UsageError(f"--checkpoint {str(args.checkpoint)!r}: its sparsity record names a tensor the model "
                           f"does not have: {e}") from None
    criterion, distill = c.distill_from_arg(args, data, next(model.parameters()).device)
    model.train()
    trainer = c.make_trainer(args, model, data, c.train_config(args), criterion=criterion)
    if masks:
        trainer.callbacks.append(KeepZeros(masks))
    result = c.run_trainer(args, trainer)
    cost = count_model(model, data.input_shape)
    summary = {
        "command": "finetune", "model": spec.name, "dataset": data.name, "checkpoint": str(args.checkpoint),
        "accuracy": result.accuracy, "test_loss": result.loss, "accuracy_before": before["accuracy"],
        "params": cost.params, "macs": cost.macs, "flops": cost.flops,
        "pruned": spec.plan is not None, "sparse": bool(masks),
        "distill": distill,
        "epochs": result.epochs, "steps": result.steps, "elapsed_s": result.elapsed_s,
        "config": {k: getattr(trainer.config, k) for k in trainer.config.__dataclass_fields__},
        "history": result.history, "versions": c.versions(), "world_size": distributed.world_size(),
    }
    for key in ("accuracy_dense", "flops_reduction", "macs_dense", "params_dense", "widths", "criterion"):
        if key in ckpt.summary:
            summary[key] = ckpt.summary[key]
    if masks:
        total = sum(m.numel() for _, m in masks.values())
        zeros = sum(int((p == 0).sum()) for p, _ in masks.values())
        summary["sparsity"] = zeros / max(total, 1)
        spec.sparsity = {**spec.sparsity, "sparsity": summary["sparsity"]}
    if distributed.is_main():
        save(args.out, model, spec, summary, overwrite=args.overwrite)
        print(f"{spec.name} on {data.name}: fine-tuned {result.epochs:g} epoch{'' if result.epochs == 1 else 's'}, "
              f"accuracy "
              f"{before['accuracy']:.4f} -> {result.accuracy:.4f}"
              + (f", sparsity {summary['sparsity']:.4f}" if masks else "") + f" -> {args.out}")
    distributed.shutdown()
    return 0
