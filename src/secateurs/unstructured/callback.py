"""Cyclical pruning inside :func:`secateurs.train.fit`: build the sparsifier once the step count is known."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .._progress import progress_iter
from ..data import seeded_batches
from ..train import Callback, lr_factor
from .sparsifier import CyclicalSparsifier

__all__ = ["SparsifierCallback"]

Factory = Callable[[nn.Module, int], CyclicalSparsifier]


class SparsifierCallback(Callback):
    """Runs a :class:`CyclicalSparsifier` during training.

    Args:
        sparsifier: a ready sparsifier, or a factory ``(model, total_steps) -> CyclicalSparsifier`` called at
            ``on_train_begin`` (when the trainer knows its number of steps).
        bn_batches: at the end, re-estimate BatchNorm statistics on this many training batches (no augmentation,
            seeded order); 0 disables.
        lr_restart: restart the trainer's warm-up-free cosine learning rate at every cycle start of a
            :class:`~secateurs.schedules.Cyclical` schedule (default: the trainer's single cosine over all steps).

    After training, :attr:`summary` holds the sparsifier's :meth:`~CyclicalSparsifier.summary` and
    :attr:`sparsifier` the (finalized) sparsifier with its per-update :attr:`~CyclicalSparsifier.history`.
    """

    def __init__(self, sparsifier: CyclicalSparsifier | Factory, *, bn_batches: int = 50, lr_restart: bool = False):
        self._factory = None if isinstance(sparsifier, CyclicalSparsifier) else sparsifier
        self.sparsifier: CyclicalSparsifier | None = sparsifier if self._factory is None else None
        self.bn_batches = int(bn_batches)
        self.lr_restart = bool(lr_restart)
        self.summary: dict[str, Any] | None = None
        self.losses: list[float] = []
        self._pending: dict | None = None

    def on_train_begin(self, trainer) -> None:
        if self.sparsifier is None:
            self.sparsifier = self._factory(trainer.model, trainer.total_steps)
        self.sparsifier.attach(trainer.optimizer)
        if self._pending is not None:
            self.sparsifier.load_state_dict(self._pending)
            self._pending = None
        if self.lr_restart:
            self._restart_lr(trainer)

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        self.losses.append(float(loss))

    def on_train_end(self, trainer) -> None:
        sp = self.sparsifier
        batches = None
        if self.bn_batches > 0:
            batches = progress_iter(_bn_batches(trainer, self.bn_batches), self.bn_batches, "batchnorm statistics",
                                    getattr(trainer, "progress_mode", "off"))
        self.summary = sp.finalize(bn_data=batches, bn_batches=self.bn_batches or None)

    def state_dict(self) -> dict:
        if self.sparsifier is None:
            return {}
        return {"sparsifier": self.sparsifier.state_dict(), "lr_restart": self.lr_restart,
                "bn_batches": self.bn_batches}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the saved ``lr_restart`` / ``bn_batches`` must match this callback's."""
        if "sparsifier" not in state:
            return
        for key, now in (("lr_restart", self.lr_restart), ("bn_batches", self.bn_batches)):
            if key in state and state[key] != now:
                raise ValueError(f"{key}: saved {state[key]!r}, now {now!r}")
        if self.sparsifier is None:
            self._pending = state["sparsifier"]
        else:
            self.sparsifier.load_state_dict(state["sparsifier"])

    def _restart_lr(self, trainer) -> None:
        sched = self.sparsifier.schedule
        if not hasattr(sched, "cycle_start"):
            return
        starts = [sched.cycle_start(c) for c in range(sched.cycles + 1)]
        warmup = getattr(trainer, "warmup_steps", 0)

        def factor(step: int) -> float:
            c = sched.cycle_of(step)
            if c == 0:
                return lr_factor(step, starts[1], min(warmup, starts[1] // 2))
            return lr_factor(step - starts[c], starts[c + 1] - starts[c], 0)

        trainer.scheduler.lr_lambdas = [factor for _ in trainer.optimizer.param_groups]


def _bn_batches(trainer, n: int):
    return seeded_batches(trainer.data.train_x, batch_size=int(trainer.config.batch_size),
                          seed=trainer.config.seed, batches=n)
