"""Knowledge distillation as a training loss: a pruned (or sparse) student learns from its source model's logits.

    loss = (1 − weight) · CE(student, labels) + weight · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

(Hinton et al. 2015; the T² keeps the soft term's gradient scale independent of T.) ``weight = 1`` is pure logit
distillation as in Minitron. The teacher runs in eval mode without gradients on the very batch the student sees
(the same augmentation), on the student's device; its parameters are never touched. The loss is a plain callable
``(logits, inputs, targets) -> loss`` that :class:`secateurs.train.Trainer` takes as ``criterion``, so the loop,
resume and DDP stay as they are.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DistillConfig", "DistillationLoss"]


@dataclass(frozen=True)
class DistillConfig:
    """``weight`` of the soft (teacher) term in [0, 1]; ``temperature`` > 0 softens both distributions."""

    weight: float = 0.5
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.weight <= 1.0) or math.isnan(self.weight):
            raise ValueError(f"weight must be in [0, 1], got {self.weight!r}")
        if not (0.0 < self.temperature <= 1e3) or math.isnan(self.temperature):
            raise ValueError(f"temperature must be in (0, 1000], got {self.temperature!r}")


class DistillationLoss:
    """The distillation criterion for :class:`~secateurs.train.Trainer` (``criterion=``)."""

    def __init__(self, teacher: nn.Module, config: DistillConfig = DistillConfig(), label_smoothing: float = 0.0):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.config = config
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w, t = self.config.weight, self.config.temperature
        hard = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        if w == 0.0:
            return hard
        with torch.no_grad():
            self.teacher.eval()  # a caller's .train() on the whole tree must not switch its BatchNorm to batch stats
            soft_targets = F.log_softmax(self.teacher(inputs).float() / t, dim=1)
        soft = F.kl_div(F.log_softmax(logits.float() / t, dim=1), soft_targets, log_target=True,
                        reduction="batchmean") * (t * t)
        return (1.0 - w) * hard + w * soft

    def to_dict(self) -> dict:
        """What a resumed run must match (the teacher's weights are not part of it)."""
        return {"kind": "distill", **asdict(self.config), "label_smoothing": self.label_smoothing}
