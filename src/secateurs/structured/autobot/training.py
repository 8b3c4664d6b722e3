"""Bottleneck training: weights frozen, model in eval mode, only the scores α train (docs/autobot.md, "Optimisation").

Eval mode keeps BatchNorm on its running statistics (and leaves them untouched): the scores must learn which
channels the *trained* network can lose, not adapt the statistics to the gated activations. ``requires_grad`` is
switched off on every weight for the duration (so autograd only differentiates with respect to activations and α)
and restored afterwards, together with the model's train/eval mode.

Best-score rule: over the last ``best_fraction`` (40%) of the steps, keep the scores that produced the lowest
mini-batch loss. The loss of step t is computed with the scores *before* update t, so those are the scores kept.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
import torch.nn as nn

from ..._device import device_of
from ..._progress import Progress, progress_mode
from ...data import BatchLoader, DataSplits
from ...cost.base import CostModel
from .bottleneck import Bottlenecks
from .loss import autobot_loss


@dataclass
class BottleneckRun:
    scores: dict[str, torch.Tensor]  # best λ per group (float64, CPU)
    alphas: dict[str, torch.Tensor]  # the matching α (ranking key that never saturates)
    best_step: int
    best_loss: float
    history: list[dict] = field(default_factory=list)  # per step: step, loss, ce, l_f, l_b, soft_cost
    seconds: float = 0.0
    images: int = 0


def best_window_start(steps: int, fraction: float) -> int:
    """First step (0-based) of the window the best scores are taken from: the last ``fraction`` of ``steps``."""
    return min(steps - 1, max(0, steps - max(1, math.ceil(fraction * steps))))


def training_batches(data: DataSplits | Iterable, batch_size: int, seed: int, augment: bool = True
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless mini-batches: a ``DataSplits``' training split with its usual augmentation, reshuffled every epoch
    (so N·batch_size may exceed the dataset), or any re-iterable of ``(x, y)`` batches, cycled."""
    if isinstance(data, DataSplits):
        n = len(data.train_x)
        if n == 0:
            raise ValueError("the training split is empty")
        loader = BatchLoader(data.train_x, data.train_y, batch_size, shuffle=True,
                             augment=data.augment if augment else None, seed=seed, drop_last=n >= batch_size)
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1
    else:
        while True:
            empty = True
            for batch in data:
                empty = False
                yield batch[0], batch[1]
            if empty:
                raise ValueError("the bottleneck data yielded no batches")


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Weights frozen and eval mode inside; ``requires_grad`` flags and train/eval mode restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def pressure_weights(cost: CostModel, power: float) -> dict[str, float] | None:
    """Per group, the factor on the cost term's gradient so that, at full width, each gate is pulled in
    proportion to ``c ** power``, where c is what one of its channels costs (``cost.per_channel()``), with the
    same total pull over all channels as the plain gradient. ``power=1``: the plain gradient, the paper's (None:
    nothing to scale); ``power=0``: every gate the same pull, so the cross-entropy alone decides which channels
    close. A group whose channels cost nothing keeps factor 1."""
    if not (math.isfinite(power) and 0 <= power <= 1):
        raise ValueError(f"cost power must be in [0, 1], got {power!r}")
    if power == 1:
        return None
    per = cost.per_channel()
    total = sum(c * cost.widths[g] for g, c in per.items())
    powered = sum(c ** power * cost.widths[g] for g, c in per.items() if c > 0)
    return {g: (c ** power * total / powered / c if c > 0 and powered > 0 else 1.0) for g, c in per.items()}


def priced_scores(scores: dict[str, torch.Tensor], weights: dict[str, float] | None) -> dict[str, torch.Tensor]:
    """``scores`` as the cost term sees them: the same values, the gradient scaled by ``weights`` per group."""
    if weights is None:
        return scores
    return {g: s.detach() + (s - s.detach()) * weights.get(g, 1.0) for g, s in scores.items()}


def train_bottlenecks(
    model: nn.Module, bottlenecks: Bottlenecks, cost: CostModel, batches: Iterator, *,
    steps: int, target_macs: float, beta: float, gamma: float, lr: float, best_fraction: float = 0.4,
    cost_power: float = 1.0, progress: bool | None = None,
) -> BottleneckRun:
    """Train ``bottlenecks``' scores for ``steps`` mini-batches from ``batches`` (Adam, no weight decay, no
    schedule) and return the best scores (see the module docstring). ``cost`` prices the soft widths (L_F);
    ``target_macs`` is the cost the loss aims at, in ``cost.unit``; ``cost_power`` how the cost term's gradient
    is shared among the gates (``pressure_weights``)."""
    device = device_of(model)
    dense = float(cost.dense)
    weights = pressure_weights(cost, cost_power)
    optimizer = torch.optim.Adam(bottlenecks.parameters(), lr=lr)
    start = best_window_start(steps, best_fraction)
    best = None
    history, images = [], 0
    # progress=None: a live bar on a terminal, else a line every 10% of the steps or 30 s; False: silent
    bar = Progress(steps, "bottlenecks", progress_mode(progress), log_done=False)
    t0 = time.perf_counter()
    with frozen(model), bottlenecks.attach(model):
        for step in range(steps):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            scores = bottlenecks.refresh()
            before = {g: a.detach().clone() for g, a in bottlenecks.alphas.items()} if step >= start else None
            terms = autobot_loss(model(x), y, cost.soft(priced_scores(scores, weights)), scores,
                                 target=target_macs, dense=dense, beta=beta, gamma=gamma)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            images += len(y)
            row = {"step": step, **terms.values()}
            history.append(row)
            if before is not None and (best is None or row["loss"] < best[1]):
                best = (step, row["loss"], before)
            bar.update(1, ce=f"{row['ce']:.3f}", l_f=f"{row['l_f']:.3f}", l_b=f"{row['l_b']:.3f}",
                       **{cost.name: f"{_fmt(row['soft_cost'], cost.unit)}/{_fmt(target_macs, cost.unit)}"})
    seconds = time.perf_counter() - t0
    bar.close()
    step, loss, alphas = best
    if progress is not False:
        b = history[step]
        print(f"bottlenecks: {steps} steps, {images} images in {seconds:.1f}s; best step {step}: loss {b['loss']:.4f} "
              f"(ce {b['ce']:.4f}, l_f {b['l_f']:.4f}, l_b {b['l_b']:.4f}), soft {cost.quantity} "
              f"{_fmt(b['soft_cost'], cost.unit)} (target {_fmt(target_macs, cost.unit)})", file=sys.stderr, flush=True)
    alphas = {g: a.double().cpu() for g, a in alphas.items()}
    return BottleneckRun({g: a.sigmoid() for g, a in alphas.items()}, alphas, step, loss, history, seconds, images)


def _fmt(value: float, unit: str) -> str:
    return f"{value / 1e6:.3g}M" if unit == "MACs" else f"{value:.3g} {unit}"
