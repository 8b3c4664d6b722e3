"""The training loop every secateurs command uses, with callbacks as the pruning extension point.

Pruning methods never edit this loop: the cyclical sparsifier hooks the optimizer from a callback, AutoBot
fine-tunes through it. The loop is deterministic on CPU for a given seed, and runs unchanged under
``torchrun`` (DDP): the global batch is split over ranks, each rank reads its shard of the same permutation,
and only rank 0 prints.

Resume: with ``state_path`` the trainer writes its whole state (weights, optimizer, LR schedule, step, epoch,
history, RNG, every callback's ``state_dict()``) atomically after every epoch; :meth:`Trainer.load_state_dict` on a
fresh trainer with the same configuration continues from the last finished epoch, and on CPU the result is bit for
bit the uninterrupted run's. The file format (what is written, how it is read without arbitrary pickle, when a
saved state fits a run) is ``secateurs.train_state``.

Divergence: the first non-finite training loss stops the run with :class:`~secateurs.errors.DivergedError` (the
step and the learning rate), before that step updates the weights; no state or checkpoint is written from it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as dist_utils
from ._device import device_of
from ._progress import Progress, progress_mode
from .data import BatchLoader, DataSplits
from .errors import DivergedError
from .train_state import (  # noqa: F401  (ResumeError and read_train_state are part of this module's surface)
    TRAIN_STATE_FORMAT, TRAIN_STATE_VERSION, ResumeError, check_resumable, cpu_copy, read_train_state,
    write_train_state,
)

__all__ = ["TrainConfig", "Callback", "Trainer", "TrainResult", "fit", "evaluate", "lr_factor", "read_train_state",
           "ResumeError"]

@dataclass
class TrainConfig:
    """Hyper-parameters of one training run. ``batch_size`` is the global batch (split over DDP ranks)."""

    epochs: float = 10
    lr: float = 0.1
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    seed: int = 0
    augment: bool = True
    eval_batch_size: int = 512
    max_steps: int | None = None
    evaluate_every_epoch: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs, self.epochs > 0 and math.isfinite(self.epochs)),
            ("lr", self.lr, self.lr > 0 and math.isfinite(self.lr)),
            ("batch_size", self.batch_size, self.batch_size >= 1),
            ("momentum", self.momentum, 0 <= self.momentum < 1),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0 and math.isfinite(self.weight_decay)),
            ("warmup_epochs", self.warmup_epochs, self.warmup_epochs >= 0 and math.isfinite(self.warmup_epochs)),
            ("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1),
            ("eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1),
            ("max_steps", self.max_steps, self.max_steps is None or self.max_steps >= 1),
        ]
        for name, value, ok in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name}: invalid value {value!r}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"TrainConfig.optimizer: expected sgd, adam or adamw, got {self.optimizer!r}")


class Callback:
    """Hooks into :class:`Trainer`. Override what you need; every method is optional."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...

    def on_step_end(self, trainer: "Trainer", step: int, loss: float) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict) -> None: ...

    def on_train_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up then one cosine to zero: a pure function of the step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy (0–1) and mean cross-entropy in eval mode; the model's mode is restored."""
    if len(x) == 0:
        return {"accuracy": float("nan"), "loss": float("nan")}
    was_training = model.training
    model.eval()
    device = device_of(model)
    correct, loss_sum = 0, 0.0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            out = model(xb)
            loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
            correct += (out.argmax(1) == yb).sum().item()
    finally:
        model.train(was_training)
    return {"accuracy": correct / len(x), "loss": loss_sum / len(x)}


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    accuracy: float = float("nan")
    loss: float = float("nan")
    epochs: float = 0
    steps: int = 0
    elapsed_s: float = 0.0
    train_images_per_s: float = 0.0
    seconds_per_epoch: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        """A small table: the test result, the run's size and speed, and one row per epoch."""
        lines = [f"test accuracy {100 * self.accuracy:.2f}%  (loss {self.loss:.4f})  after {self.epochs:g} "
                 f"epoch{'' if self.epochs == 1 else 's'}, "
                 f"{self.steps:,} steps in {self.elapsed_s:.1f}s ({self.train_images_per_s:,.0f} train images/s)"]
        if self.history:
            has_val = any("val_accuracy" in h for h in self.history)
            lines.append("epoch  train loss  train acc (%)" + ("  val acc (%)" if has_val else "") + "  seconds")
            for h in self.history:
                val = f"  {100 * h['val_accuracy']:11.2f}" if "val_accuracy" in h else ("  " + " " * 11) * has_val
                lines.append(f"{h['epoch']:5d}  {h['train_loss']:10.4f}  {100 * h['train_accuracy']:13.2f}{val}"
                             f"  {h['seconds']:7.1f}")
        return "\n".join(lines)


class Trainer:
    """Owns model, optimizer, LR schedule and step counter for one run; see :func:`fit`.

    ``state_path``: write the training state there (atomically) after every epoch, for :meth:`load_state_dict`.
    ``criterion``: a loss ``(logits, inputs, targets) -> scalar`` in place of cross-entropy with the config's label
    smoothing (e.g. :class:`secateurs.distill.DistillationLoss`); its ``to_dict()``, if any, must match on resume.
    """

    def __init__(self, model: nn.Module, data: DataSplits, config: TrainConfig,
                 callbacks: Sequence[Callback] = (), progress: bool | None = None,
                 params: Any = None, state_path: str | os.PathLike | None = None, criterion: Any = None):
        self.config = config
        self.criterion = criterion
        self.state_path = Path(state_path) if state_path is not None else None
        self.epoch = 0
        self.history: list[dict] = []
        self._train_time, self._images = 0.0, 0
        self._resume: dict | None = None
        self.data = data
        self.callbacks = list(callbacks)
        self.model = model
        self.rank, self.world_size = dist_utils.rank(), dist_utils.world_size()
        if config.batch_size % self.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the world size {self.world_size}")
        self.device = device_of(model)
        self.loader = BatchLoader(
            data.train_x, data.train_y, config.batch_size // self.world_size, shuffle=True,
            augment=data.augment if config.augment else None, seed=config.seed, drop_last=True,
            rank=self.rank, world_size=self.world_size)
        if len(self.loader) == 0:
            raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({len(data.train_x)})")
        self.steps_per_epoch = len(self.loader)
        self.total_steps = max(1, round(config.epochs * self.steps_per_epoch))
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.warmup_steps = min(round(config.warmup_epochs * self.steps_per_epoch), self.total_steps // 2)
        self.ddp_model = model
        if dist_utils.is_distributed():
            self.ddp_model = nn.parallel.DistributedDataParallel(model)
        trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        self.optimizer = _make_optimizer(trainable, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, self.warmup_steps))
        self.global_step = 0
        # a bar on a terminal, else a line per epoch and inside long epochs (every ~10% of the run or 30 s)
        self.progress_mode = progress_mode(progress) if dist_utils.is_main() else "off"
        self.show_progress = self.progress_mode == "bar"
        self.log_epochs = self.progress_mode != "off"

    def add_callback(self, callback: Callback) -> "Trainer":
        """Add a callback after construction (e.g. one that needs ``total_steps`` to be built). Before ``run``."""
        if self.global_step:
            raise RuntimeError("add_callback must be called before run()")
        self.callbacks.append(callback)
        return self

    # ------------------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run from the current epoch boundary (tensors on CPU)."""
        return {
            "format": TRAIN_STATE_FORMAT, "version": TRAIN_STATE_VERSION,
            "config": asdict(self.config), "total_steps": self.total_steps, "world_size": self.world_size,
            "epoch": self.epoch, "global_step": self.global_step,
            "model": cpu_copy(self.model.state_dict()),
            "optimizer": cpu_copy(self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
            "history": [dict(h) for h in self.history], "train_time": self._train_time, "images": self._images,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "callbacks": [cpu_copy(cb.state_dict()) for cb in self.callbacks],
            "criterion": self._criterion_record(),
        }

    def _criterion_record(self) -> dict | None:
        to_dict = getattr(self.criterion, "to_dict", None)
        return to_dict() if callable(to_dict) else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (or :func:`read_train_state`) at the next :meth:`run`.

        The configuration, step count, world size and callbacks must match the saved run; the model's weights,
        optimizer and schedule are restored once the callbacks' ``on_train_begin`` has run (so a sparsifier's
        masks and parametrisations exist), callbacks get their saved ``state_dict()`` before it.
        """
        if self.global_step:
            raise RuntimeError("load_state_dict must be called before run()")
        check_resumable(state, config=asdict(self.config), criterion=self._criterion_record(),
                        total_steps=self.total_steps, world_size=self.world_size, model=self.model.state_dict())
        self._resume = state

    def save_state(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (rank 0 only under DDP)."""
        if not dist_utils.is_main():
            return
        write_train_state(path, self.state_dict())

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ResumeError(f"the saved weights or optimizer do not fit this run: {str(e).splitlines()[0]}") \
                from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.history = [dict(h) for h in state["history"]]
        self._train_time, self._images = float(state["train_time"]), int(state["images"])
        torch.set_rng_state(state["rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def _check_finite(self, loss: float) -> None:
        """Stop at the first non-finite loss (before it poisons the weights): under DDP every rank must agree, or
        the ranks that continue would wait forever in the next all-reduce."""
        bad = not math.isfinite(loss)
        if dist_utils.is_distributed():
            import torch.distributed as dist

            flag = torch.tensor([float(bad)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(flag)
            bad = bool(flag.item())
        if bad:
            raise DivergedError(self.global_step, loss, self.optimizer.param_groups[0]["lr"])

    def _emit(self, method: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, method)(self, *args)

    def run(self) -> TrainResult:
        """Train; the caller's global RNG state and the model's train/eval mode are restored afterwards."""
        was_training = self.model.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            try:
                return self._run()
            finally:
                self.model.train(was_training)

    def _run(self) -> TrainResult:
        cfg = self.config
        result = TrainResult()
        resume, self._resume = self._resume, None
        if resume is not None:
            if len(resume["callbacks"]) != len(self.callbacks):
                raise ResumeError(f"the saved run had {len(resume['callbacks'])} callbacks, this one has "
                                  f"{len(self.callbacks)} (another command or pruning set-up)")
            try:  # a callback may check its state here, or when it applies it in on_train_begin
                for cb, cb_state in zip(self.callbacks, resume["callbacks"]):
                    cb.load_state_dict(cb_state)
                self._emit("on_train_begin")
            except ResumeError:
                raise
            except ValueError as e:
                raise ResumeError(f"a callback's saved state does not fit: {e}") from None
            self._restore(resume)
        else:
            self._emit("on_train_begin")
        start = time.perf_counter()
        epoch = self.epoch
        while self.global_step < self.total_steps:
            self.loader.set_epoch(epoch)
            self.model.train()
            n_steps = min(self.steps_per_epoch, self.total_steps - self.global_step)
            # lines inside an epoch only when one epoch is a large part of the run; else the epoch lines suffice
            share = n_steps / self.total_steps
            bar = Progress(n_steps, f"epoch {epoch + 1}/{math.ceil(self.total_steps / self.steps_per_epoch)}",
                           self.progress_mode, every=0.1 / share if share > 0.15 else None, log_done=False)
            loss_sum, correct, seen = 0.0, 0, 0
            t0 = time.perf_counter()
            for i, (xb, yb) in enumerate(self.loader):
                if i >= n_steps:
                    break
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
                out = self.ddp_model(xb)
                loss = (F.cross_entropy(out, yb, label_smoothing=cfg.label_smoothing) if self.criterion is None
                        else self.criterion(out, xb, yb))
                loss_value = loss.item()
                self._check_finite(loss_value)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.global_step += 1
                self._emit("on_step_end", self.global_step - 1, loss_value)
                loss_sum += loss_value * len(yb)
                correct += (out.argmax(1) == yb).sum().item()
                seen += len(yb)
                rate = seen * self.world_size / max(time.perf_counter() - t0, 1e-9)
                bar.update(1, loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}")
            bar.close()
            epoch_time = time.perf_counter() - t0
            self._train_time += epoch_time
            self._images += seen * self.world_size
            metrics = {"epoch": epoch + 1, "step": self.global_step, "train_loss": loss_sum / max(seen, 1),
                       "train_accuracy": correct / max(seen, 1), "lr": self.optimizer.param_groups[0]["lr"],
                       "seconds": epoch_time, "images_per_s": seen * self.world_size / max(epoch_time, 1e-9)}
            if cfg.evaluate_every_epoch and len(self.data.val_x):
                metrics.update({f"val_{k}": v for k, v in
                                evaluate(self.model, self.data.val_x, self.data.val_y, cfg.eval_batch_size).items()})
            self._emit("on_epoch_end", epoch, metrics)
            self.history.append(metrics)
            if self.log_epochs:
                val = f" val_acc {metrics['val_accuracy']:.4f}" if "val_accuracy" in metrics else ""
                print(f"epoch {epoch + 1}: loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.4f}"
                      f"{val} {metrics['images_per_s']:.0f} img/s {epoch_time:.1f}s", file=sys.stderr, flush=True)
            epoch += 1
            self.epoch = epoch
            if self.state_path is not None:
                self.save_state(self.state_path)
        self._emit("on_train_end")
        result.history = list(self.history)
        train_time, images = self._train_time, self._images
        test = evaluate(self.model, self.data.test_x, self.data.test_y, cfg.eval_batch_size)
        result.accuracy, result.loss = test["accuracy"], test["loss"]
        result.steps = self.global_step
        result.epochs = self.global_step / self.steps_per_epoch
        result.elapsed_s = time.perf_counter() - start
        result.train_images_per_s = images / max(train_time, 1e-9)
        result.seconds_per_epoch = train_time / max(result.epochs, 1e-9)
        return result


def fit(model: nn.Module, data: DataSplits, config: TrainConfig | None = None,
        callbacks: Sequence[Callback] = (), progress: bool | None = None, criterion: Any = None) -> TrainResult:
    """Train ``model`` on ``data.train_*`` and return test metrics (accuracy 0–1) and timings.
    ``criterion``: another training loss, e.g. :class:`secateurs.distill.DistillationLoss` (see :class:`Trainer`)."""
    return Trainer(model, data, config or TrainConfig(), callbacks, progress, criterion=criterion).run()


def _make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

