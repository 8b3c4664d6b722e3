"""Plumbing shared by the AutoBot benchmarks: the dense starting point, the evaluation subset, the short
fine-tune every method gets, and one training epoch's wall time (the unit of AutoBot's cost)."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import dense_checkpoint


def setup(model_name: str, data_name: str, train_subset: int | None, test_subset: int | None, dense_seed: int = 0,
          dense_dir: str | None = None):
    """(dense checkpoint, full data, fine-tune data, (test_x, test_y)). Bottlenecks and Taylor scores use the full
    training split (they draw a fixed number of batches); only fine-tuning uses ``train_subset``. The test subset is
    a seeded random sample, the same for every method and seed. ``dense_dir``: load ``<dir>/<model>_<data>_s<seed>``
    instead of the shared cache (a reduced dense run; the report must say so)."""
    from secateurs.data import get_dataset
    from secateurs.io import load_checkpoint

    if dense_dir:
        ckpt = load_checkpoint(Path(dense_dir).expanduser() / f"{model_name}_{data_name}_s{dense_seed}")
    else:
        ckpt = dense_checkpoint(model_name, data_name, dense_seed, train_if_missing=False)
    full = get_dataset(data_name, seed=dense_seed)  # the dense model's own split
    ft = get_dataset(data_name, seed=dense_seed, train_subset=train_subset) if train_subset else full
    x, y = full.test_x, full.test_y
    if test_subset and test_subset < len(x):
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))[:test_subset].sort().values
        x, y = x[idx], y[idx]
    return ckpt, full, ft, (x, y)


def accuracy(model, test) -> float:
    from secateurs.train import evaluate

    return evaluate(model, test[0], test[1], batch_size=500)["accuracy"]


def bn_recalibrated_accuracy(model, data, test, seed: int, batches: int = 20, batch_size: int = 64) -> float:
    """Accuracy of a copy of ``model`` after re-estimating its BatchNorm statistics on ``batches`` seeded training
    batches (no augmentation, no gradient step): how much of a pruned network's "accuracy before fine-tuning" is
    only stale BN statistics. The model itself is not changed."""
    from secateurs.structured.workflow import recalibrate_batchnorm

    m = copy.deepcopy(model)
    recalibrate_batchnorm(m, data, batches, 10_000 + seed, progress=False, batch_size=batch_size)
    return accuracy(m, test)


def finetune(model, ft_data, epochs: float, seed: int, batch_size: int, test, teacher=None,
             threads: int | None = None) -> tuple[float, float]:
    """The same short fine-tune for every method (the paper's CIFAR recipe, docs/autobot.md, shortened); returns
    (accuracy, seconds). ``teacher``: distil from it (``secateurs.distill.DistillationLoss``, library defaults).
    ``threads``: train (and evaluate) with that many torch threads, restored afterwards."""
    if threads is not None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return finetune(model, ft_data, epochs, seed, batch_size, test, teacher)
        finally:
            torch.set_num_threads(before)
    from secateurs.structured.autobot import finetune_config
    from secateurs.train import fit

    if epochs <= 0:
        return accuracy(model, test), 0.0
    t0 = time.perf_counter()
    cfg = finetune_config(epochs, seed=seed, batch_size=batch_size, evaluate_every_epoch=False)
    # fit() evaluates on the full test split at the end; evaluate on the benchmark's subset instead
    small = copy.copy(ft_data)
    small.test_x, small.test_y = test[0][:1], test[1][:1]
    criterion = None
    if teacher is not None:
        from secateurs.distill import DistillationLoss

        criterion = DistillationLoss(copy.deepcopy(teacher))
    fit(model, small, cfg, progress=False, criterion=criterion)
    return accuracy(model, test), time.perf_counter() - t0


def epoch_seconds(model, data, batch_size: int = 128, steps: int = 20, warmup: int = 2) -> float:
    """Wall time of one dense training epoch over ``data.train_x``, from the median of ``steps`` SGD steps (same
    threads and machine as the AutoBot run it is compared with; the median resists a neighbour's bursts)."""
    m = copy.deepcopy(model).train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(warmup + steps):
        idx = torch.randint(0, len(data.train_x), (batch_size,), generator=g)
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * (len(data.train_x) // batch_size)
