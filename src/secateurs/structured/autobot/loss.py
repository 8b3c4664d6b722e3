"""AutoBot's loss: L = CE(f(x; λ), y) + β·L_F(λ) + γ·L_B(λ) (docs/autobot.md).

* L_F is piecewise linear in the soft MACs F(λ) (``secateurs.cost.macs.MacsModel``): 0 at the target T, 1 at
  F = F_max and at F = 0, i.e. ``(F − T)/(F_max − T)`` above the target and ``1 − F/T`` below it.
  Computed with autograd through the (bilinear) MACs model, never by hand.
* L_B is the mean over score vectors of the mean of |λ − round(λ)|: it pushes every score to the nearer of 0 and 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F


def flops_loss(macs: torch.Tensor, target: float, dense: float) -> torch.Tensor:
    """L_F for soft MACs ``macs``, target ``target`` (T) and dense MACs ``dense`` (F_max), with 0 < T < F_max."""
    if not 0 < target < dense:
        raise ValueError(f"target MACs must be in (0, {dense}), got {target}")
    above = (macs - target) / (dense - target)
    below = 1 - macs / target
    return torch.where(macs > target, above, below)


def binarization_loss(scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """L_B: mean over score vectors of mean |λ − round(λ)| (0 for no vectors)."""
    terms = [(s - s.detach().round()).abs().mean() for s in scores.values()]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).mean()


@dataclass
class LossTerms:
    total: torch.Tensor
    ce: torch.Tensor
    flops: torch.Tensor
    binar: torch.Tensor
    macs: torch.Tensor

    def values(self) -> dict[str, float]:
        named = {"loss": self.total, "ce": self.ce, "l_f": self.flops, "l_b": self.binar, "soft_cost": self.macs}
        return {k: float(v.detach()) for k, v in named.items()}


def autobot_loss(logits: torch.Tensor, y: torch.Tensor, macs: torch.Tensor, scores: Mapping[str, torch.Tensor], *,
                 target: float, dense: float, beta: float, gamma: float) -> LossTerms:
    ce = F.cross_entropy(logits, y)
    lf = flops_loss(macs, target, dense).to(ce.dtype)
    lb = binarization_loss(scores).to(ce.device, ce.dtype)
    return LossTerms(ce + beta * lf + gamma * lb, ce, lf, lb, macs)
