"""The sparsifier: magnitude masks that follow a schedule, with a prepare → step → finalize lifecycle.

    sp = CyclicalSparsifier(model, Cyclical(0.95, total_steps))   # prepare: choose tensors, mask at step 0
    sp.attach(optimizer)                                         # step: runs after every optimizer.step()
    ...unchanged training loop...
    summary = sp.finalize()   # the model, in place: plain weights, exact zeros, exactly s_f; returns a dict

Step convention: ``sp.step_count`` is the number of optimizer steps taken. After optimizer step number ``t`` the
sparsifier (1) recomputes the masks from scratch at ``schedule.sparsity_at(t)`` when ``t`` is an update step —
a multiple of ``update_every``, a cycle start or a hold start (``schedule.boundaries()``) — ranking the weights
*after* the optimizer step, so a pruned weight whose gradient step made it large enough re-enters the mask
(projected gradient descent); and (2) applies the masks. From ``schedule.freeze_step`` (the hold of the last
cycle, at exactly ``final_sparsity``) on the masks are frozen.

Weight handling (``variant``):

* ``"project"`` (A, default): after every step the weights are multiplied by the mask and every optimizer
  state tensor shaped like the weight (momentum, Adam moments) is zeroed where pruned. Pruned weights are
  exactly 0, receive ordinary gradients, and regrow when a lower-sparsity mask admits them. No model change.
* ``"shadow"`` (B): a ``torch.nn.utils.parametrize`` mask in the forward pass; pruned weights get no gradient
  and keep their stale value (their optimizer state is zeroed every step; weight decay still shrinks them).
* ``"ste"`` (C): the forward pass uses the masked weight, the backward pass gives the dense weight the dense
  (straight-through) gradient, so pruned weights keep learning and can overtake kept ones.

``finalize()`` removes every hook and parametrisation and leaves plain ``nn.Parameter`` weights with exact zeros
at exactly ``final_sparsity`` (count rule in :mod:`._masks`).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parametrize

from ..schedules import Schedule, schedule_from_dict
from ._bn import reestimate_batchnorm
from ._masks import magnitude_masks, num_pruned, split_like
from ._nm import Pattern, nm_masks
from ._select import DEFAULT_LAYER_TYPES, Target, select_prunable, unwrap, weight_of

__all__ = ["CyclicalSparsifier", "VARIANTS", "SCOPES"]

VARIANTS = ("project", "shadow", "ste")
SCOPES = ("layer", "global")


class _ForwardMask(nn.Module):
    """Parametrisation ``w ↦ w ⊙ mask`` (mask in w's dtype). ``ste=True``: same value, straight-through gradient."""

    def __init__(self, mask: torch.Tensor, ste: bool):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        self.ste = ste

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        masked = w * self.mask
        # w + (w⊙m − w).detach(): kept entries are w + 0 = w, pruned ones w − w = 0 exactly; d/dw = 1
        return w + (masked - w).detach() if self.ste else masked


class CyclicalSparsifier:
    """Magnitude sparsity following any :class:`~secateurs.schedules.Schedule` (one-shot, GMP, cyclical).

    Args:
        model: the model (a DDP wrapper is looked through).
        schedule: sparsity as a function of the optimizer step.
        update_every: Δt, steps between mask recomputations (boundaries are always updates). If a ramp of the
            schedule is shorter than Δt, Δt shrinks (with a ``UserWarning``) so that every ramp gets
            ``UPDATES_PER_SHORT_RAMP`` updates; :attr:`update_every` is the interval in force,
            :attr:`requested_update_every` the one asked for.
        scope: ``"layer"`` (uniform per-tensor sparsity) or ``"global"`` (one magnitude threshold).
        min_density: every prunable tensor keeps at least ``ceil(min_density · numel)`` of its largest entries
            (default 0). Guards global ranking against pruning a layer away at extreme sparsity; the overall count
            stays exact. A value the schedule's final sparsity cannot leave room for raises ``ValueError``.
        live_outputs: the network's last layer keeps its largest weight in every row while its kept count allows,
            so no output (no class) is left without a weight (default on). The layer is the last of
            ``layer_types`` in registration order, and only when it is pruned (not with ``keep_last_dense``,
            nor when excluded). The pruned count stays exact. ``False`` is plain magnitude ranking there too.
        variant: ``"project"`` | ``"shadow"`` | ``"ste"`` (see module docstring).
        cumulative: masks only ever shrink (classic monotone GMP, the no-recovery baseline); default is to
            recompute them from scratch.
        include, exclude, layer_types, keep_first_dense, keep_last_dense: which tensors are prunable
            (see :func:`select_prunable`).
        pattern: ``"N:M"`` (or a :class:`~._nm.Pattern`): semi-structured masks, at most N non-zeros in every M
            consecutive weights of each row; the schedule sets the fraction of rows under the pattern and its
            final sparsity must be the pattern's 1 − N/M (see :mod:`._nm`). Needs ``scope="layer"``.
        freeze_final: freeze the masks from ``schedule.freeze_step`` on (default). ``False`` keeps re-ranking
            during the final hold too (with a one-shot schedule at step 0 and ``update_every=1`` this is
            iterative hard thresholding).
        sync_masks: under ``torch.distributed``, broadcast rank 0's masks at each update so every rank agrees
            even if numerics differ.
        optimizer: shortcut for :meth:`attach`.
    """

    def __init__(self, model: nn.Module, schedule: Schedule, *, update_every: int = 50, scope: str = "layer",
                 variant: str = "project", cumulative: bool = False, include: Sequence[str] | None = None,
                 exclude: Sequence[str] = (), layer_types: Sequence[type[nn.Module]] = DEFAULT_LAYER_TYPES,
                 keep_first_dense: bool = False, keep_last_dense: bool = False, freeze_final: bool = True,
                 sync_masks: bool = True, min_density: float = 0.0, pattern: "str | Pattern | None" = None,
                 live_outputs: bool = True, optimizer: torch.optim.Optimizer | None = None):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a secateurs.schedules.Schedule, got {type(schedule).__name__}")
        if int(update_every) != update_every or update_every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {update_every!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.model = unwrap(model)
        self.schedule = schedule
        self.scope, self.variant, self.cumulative = scope, variant, bool(cumulative)
        self.freeze_final, self.sync_masks = bool(freeze_final), bool(sync_masks)
        self.targets: list[Target] = select_prunable(
            self.model, include=include, exclude=exclude, layer_types=layer_types,
            keep_first_dense=keep_first_dense, keep_last_dense=keep_last_dense)
        if not self.targets:
            raise ValueError("no prunable tensors selected (check include / exclude / layer_types)")
        self.min_density = _check_min_density(min_density, self.targets, schedule, scope)
        self.pattern = None if pattern is None else _check_pattern(Pattern.parse(pattern), schedule, scope,
                                                                   self.min_density)
        # after every check that can refuse the set-up: a refused one warns about nothing
        self.requested_update_every = int(update_every)
        self.update_every = _fit_update_every(int(update_every), schedule)
        self.min_kept = ({t.name: math.ceil(self.min_density * t.param.numel()) for t in self.targets}
                         if self.min_density > 0 else None)
        # a pattern keeps N of every M in each row: no row can empty, there is nothing to guard
        self.live_rows: dict[str, int] = (_output_layer(self.model, self.targets, layer_types)
                                          if live_outputs and self.pattern is None else {})
        self.live_outputs = bool(self.live_rows)  # in effect: False where there is nothing to guard
        self.step_count = 0
        self.masks: dict[str, torch.Tensor] = {}
        # the same masks in the weights' dtype: multiplying by a float mask is ~4x faster than by a bool one
        self._fmasks: dict[str, torch.Tensor] = {}
        self.ever_pruned: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, Any]] = []
        self.mask_sparsity: float | None = None  # schedule value the current masks were computed at
        self.finalized = False
        self._optimizers: list[torch.optim.Optimizer] = []
        self._hooks: list[Any] = []
        self._param_order: dict[str, list[str]] = {}
        self._boundaries = set(schedule.boundaries())
        self.prepare()
        if optimizer is not None:
            self.attach(optimizer)

    # ------------------------------------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Create the masks (and the forward parametrisations for shadow / ste), then update at step 0."""
        if self.masks:
            return
        for t in self.targets:
            self.masks[t.name] = torch.ones_like(t.param, dtype=torch.bool)
            self._fmasks[t.name] = torch.ones_like(t.param, requires_grad=False)
            self.ever_pruned[t.name] = torch.zeros_like(t.param, dtype=torch.bool)
            if self.variant != "project":
                self._param_order[t.name] = list(t.module._parameters)
                parametrize.register_parametrization(
                    t.module, t.attr, _ForwardMask(self._fmasks[t.name], ste=self.variant == "ste"))
        self._update_masks(0)
        self._apply()

    def attach(self, optimizer: torch.optim.Optimizer, hook: bool = True) -> "CyclicalSparsifier":
        """Follow ``optimizer``: its state of pruned weights is zeroed, and with ``hook=True`` :meth:`step` runs
        after every ``optimizer.step()`` (``register_step_post_hook``) so the training loop needs no edit.
        With ``hook=False`` call :meth:`step` yourself after each optimizer step."""
        if self.finalized:
            raise RuntimeError("the sparsifier is finalized; create a new one")
        if any(o is optimizer for o in self._optimizers):
            return self
        self._optimizers.append(optimizer)
        if hook:
            self._hooks.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step()))
        return self

    def step(self) -> None:
        """Advance one optimizer step: update the masks if due, then apply them."""
        if self.finalized:
            raise RuntimeError("step() after finalize(); the sparsifier no longer controls the model")
        self.step_count += 1
        if self.is_update_step(self.step_count):
            self._update_masks(self.step_count)
        self._apply()

    def is_update_step(self, step: int) -> bool:
        freeze = self.schedule.freeze_step
        if self.freeze_final and step > freeze:
            return False
        return step % self.update_every == 0 or step in self._boundaries or step == freeze

    @property
    def frozen(self) -> bool:
        return self.freeze_final and self.step_count >= self.schedule.freeze_step

    def finalize(self, bn_data: Iterable | None = None, bn_batches: int | None = None) -> dict[str, Any]:
        """Make the sparsity permanent, in place: ``self.model`` is left a plain model (no hooks or
        parametrisations, exact zeros at ``final_sparsity``). Returns :meth:`summary` (a dict), not the model.

        If the masks are not at ``final_sparsity`` yet (training stopped early) they are recomputed there.
        ``bn_data`` (an iterable of input batches or ``(x, y)`` pairs) re-estimates BatchNorm statistics of the
        sparse model (``bn_batches`` caps the number of batches).
        """
        if self.finalized:
            return self.summary()
        target = self.schedule.final_sparsity
        if self.mask_sparsity != target:
            self._update_masks(self.step_count, sparsity=target, note="finalize")
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        with torch.no_grad():
            for t in self.targets:
                if self.variant != "project":
                    order = self._param_order[t.name]
                    parametrize.remove_parametrizations(t.module, t.attr, leave_parametrized=False)
                    # keep the original parameter order (optimizers' state_dicts are positional)
                    params = t.module._parameters
                    t.module._parameters = type(params)((k, params[k]) for k in order if k in params)
                t.param.mul_(self.masks[t.name])
            self._zero_state()
        self.finalized = True
        if bn_data is not None:
            reestimate_batchnorm(self.model, bn_data, num_batches=bn_batches)
        return self.summary()

    # ------------------------------------------------------------------------------------------- internals
    def _update_masks(self, step: int, sparsity: float | None = None, note: str | None = None) -> None:
        s = self.schedule.sparsity_at(step) if sparsity is None else sparsity
        scores = {t.name: t.param.detach().abs() for t in self.targets}
        forced = {n: ~m for n, m in self.masks.items()} if self.cumulative else None
        if self.pattern is not None:
            new = nm_masks(scores, s, self.pattern, forced=forced)
        else:
            new = magnitude_masks(scores, s, self.scope, forced=forced, min_kept=self.min_kept,
                                  live_rows=self.live_rows)
        if self.sync_masks and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            new = _broadcast_masks(new)
        flips = kept = recovered = total = 0
        per_layer = {}
        for name, m in new.items():
            old = self.masks[name]
            flips += int((m != old).sum())
            self.ever_pruned[name] |= ~m
            kept += int(m.sum())
            recovered += int((m & self.ever_pruned[name]).sum())
            total += m.numel()
            per_layer[name] = 1.0 - int(m.sum()) / m.numel()
            old.copy_(m)
            self._fmasks[name].copy_(m)  # in place: the forward parametrisations hold these very tensors
        self.mask_sparsity = s
        rec = {"step": step, "planned": s, "sparsity": 1.0 - kept / total, "churn": flips / total,
               "recovered_fraction": recovered / kept if kept else 0.0, "sparsity_per_layer": per_layer}
        if note:
            rec["note"] = note
        self.history.append(rec)

    @torch.no_grad()
    def _apply(self) -> None:
        if self.variant == "project":
            for t in self.targets:
                t.param.mul_(self._fmasks[t.name])
        if self.variant != "ste":
            self._zero_state()

    @torch.no_grad()
    def _zero_state(self) -> None:
        for opt in self._optimizers:
            for t in self.targets:
                state = opt.state.get(t.param)
                if not state:
                    continue
                fmask = self._fmasks[t.name]
                for v in state.values():
                    if isinstance(v, torch.Tensor) and v.shape == t.param.shape:
                        v.mul_(fmask if v.dtype == fmask.dtype else self.masks[t.name])

    # ------------------------------------------------------------------------------------------- reporting
    def sparsity_per_layer(self) -> dict[str, float]:
        """Exact fraction of zeros of each prunable tensor as the forward pass sees it."""
        return {t.name: _zeros(self._effective(t)) / t.numel for t in self.targets}

    def sparsity(self) -> float:
        """Exact fraction of zeros over all prunable tensors (effective weights)."""
        return sum(_zeros(self._effective(t)) for t in self.targets) / sum(t.numel for t in self.targets)

    def recovered_fraction(self) -> float:
        """Of the weights the current mask keeps, the fraction pruned at some earlier mask update."""
        kept = sum(int(m.sum()) for m in self.masks.values())
        rec = sum(int((m & self.ever_pruned[n]).sum()) for n, m in self.masks.items())
        return rec / kept if kept else 0.0

    def summary(self) -> dict[str, Any]:
        churn = [h["churn"] for h in self.history[1:]]
        return {
            "sparsity": self.sparsity(),
            "sparsity_per_layer": self.sparsity_per_layer(),
            "recovered_fraction": self.recovered_fraction(),
            "mask_updates": len(self.history),
            "mean_churn": sum(churn) / len(churn) if churn else 0.0,
            "steps": self.step_count,
            "schedule": self.schedule.to_dict(),
            "config": self.config(),
        }

    def realised(self) -> list[tuple[int, float]]:
        """``(step, mask sparsity)`` at every mask update, for plots."""
        return [(h["step"], h["sparsity"]) for h in self.history]

    def config(self) -> dict[str, Any]:
        return {"update_every": self.update_every, "scope": self.scope, "variant": self.variant,
                "cumulative": self.cumulative, "freeze_final": self.freeze_final,
                "min_density": self.min_density, "pattern": None if self.pattern is None else str(self.pattern),
                "live_outputs": self.live_outputs, "tensors": [t.name for t in self.targets]}

    def _effective(self, t: Target) -> torch.Tensor:
        return t.param.detach() if self.finalized or self.variant == "project" else t.param.detach() * self.masks[t.name]

    # ------------------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with identical masks and schedule position (tensors are CPU bool)."""
        return {
            "step": self.step_count,
            "mask_sparsity": self.mask_sparsity,
            "finalized": self.finalized,
            "schedule": self.schedule.to_dict(),
            "config": self.config(),
            "masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
            "ever_pruned": {n: m.detach().cpu().clone() for n, m in self.ever_pruned.items()},
            "history": [dict(h, sparsity_per_layer=dict(h["sparsity_per_layer"])) for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Restore a :meth:`state_dict`. With ``strict`` the schedule and configuration must match."""
        if self.finalized:
            raise RuntimeError("cannot load state into a finalized sparsifier")
        if state.get("finalized"):
            raise ValueError("the saved sparsifier was finalized; load the model weights instead")
        if set(state["masks"]) != set(self.masks):
            raise ValueError(f"saved masks cover {sorted(state['masks'])}, this sparsifier {sorted(self.masks)}")
        if strict:
            if schedule_from_dict(state["schedule"]) != self.schedule:
                raise ValueError(f"saved schedule {state['schedule']} differs from {self.schedule.to_dict()}")
            # states saved before these existed (the guard did not exist: plain ranking, live_outputs False;
            # a sparsifier with nothing to guard records False too, so such states resume there)
            saved = {"min_density": 0.0, "pattern": None, "live_outputs": False, **state["config"]}
            mine = self.config()
            if saved != mine:
                diff = ", ".join(f"{k} (saved {saved.get(k)!r}, here {mine.get(k)!r})"
                                 for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k))
                hint = ("; the saved masks were ranked without the live-outputs guard: build the sparsifier with "
                        "live_outputs=False (CLI: --live-outputs off)"
                        if saved.get("live_outputs") is False and mine.get("live_outputs") else "")
                raise ValueError(f"saved configuration differs in {diff}{hint}")
        for n, m in state["masks"].items():
            if m.shape != self.masks[n].shape:
                raise ValueError(f"mask {n!r} has shape {tuple(m.shape)}, expected {tuple(self.masks[n].shape)}")
            self.masks[n].copy_(m)
            self._fmasks[n].copy_(m)
            self.ever_pruned[n].copy_(state["ever_pruned"][n])
        self.step_count = int(state["step"])
        self.mask_sparsity = state["mask_sparsity"]
        self.history = [dict(h, sparsity_per_layer=dict(h["sparsity_per_layer"])) for h in state["history"]]
        with torch.no_grad():  # idempotent on weights saved by a run with these masks
            if self.variant == "project":
                for t in self.targets:
                    t.param.mul_(self._fmasks[t.name])

    def __repr__(self) -> str:
        return (f"CyclicalSparsifier({self.schedule!r}, step={self.step_count}, tensors={len(self.targets)}, "
                f"scope={self.scope!r}, variant={self.variant!r}, cumulative={self.cumulative})")


def _output_layer(model: nn.Module, targets: list[Target],
                  layer_types: Sequence[type[nn.Module]]) -> dict[str, int]:
    """``{name: output dim}`` of the network's last layer's tensor if it is among ``targets``, else ``{}``.

    "Last" is the last module of ``layer_types`` with a weight, in registration order (the order
    ``keep_last_dense`` uses), pruned or not: a frozen or excluded classifier means no guard, not a guard on the
    layer before it. Its outputs are indexed by dim 0, or dim 1 for a transposed conv (weight
    ``[in, out / groups, ...]``). A grouped transposed conv has no single output dimension in its weight and is
    not guarded."""
    last = None
    for module in model.modules():
        if isinstance(module, tuple(layer_types)):
            w = weight_of(module)
            last = w if w is not None else last
    mine = next((t for t in targets if t.param is last), None) if last is not None else None
    if mine is None or mine.param.dim() < 2:
        return {}
    if isinstance(mine.module, nn.modules.conv._ConvTransposeNd):
        return {mine.name: 1} if mine.module.groups == 1 else {}
    return {mine.name: 0}


def _check_min_density(value: float, targets: list[Target], schedule: Schedule, scope: str) -> float:
    """Validate ``min_density`` against the schedule's highest sparsity, before any training happens."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"min_density must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"min_density must be in [0, 1), got {value!r}")
    if value == 0.0:
        return value
    top = schedule.peak_sparsity()
    sizes = {t.name: t.param.numel() for t in targets}

    def need(d: float) -> dict[str, int]:
        return {n: math.ceil(d * k) for n, k in sizes.items()}

    if scope == "global":
        total = sum(sizes.values())
        left = total - num_pruned(top, total)
        ok = lambda d: sum(need(d).values()) <= left  # noqa: E731
        problem = (f"keeps at least {sum(need(value).values()):,} weights, but the schedule's peak sparsity {top:g} "
                   f"leaves {left:,}")
    else:
        left_per = {n: k - num_pruned(top, k) for n, k in sizes.items()}
        ok = lambda d: all(need(d)[n] <= left_per[n] for n in sizes)  # noqa: E731
        bad = next((n for n in sizes if need(value)[n] > left_per[n]), None)
        problem = (f"needs {need(value)[bad]} of {sizes[bad]} weights in {bad}, but scope='layer' at the schedule's "
                   f"peak sparsity {top:g} keeps {left_per[bad]}") if bad else ""
    if not ok(value):
        lo, hi = 0.0, value  # the largest D that fits, to one part in 10^4
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        raise ValueError(f"min_density={value:g} {problem}; at most {math.floor(lo * 1e4) / 1e4:g} fits")
    return value


# A ramp shorter than the update interval would be skipped: the mask would jump from the cycle start straight to
# the hold (0 -> s_f at every cycle), which is one-shot pruning repeated, not a gradual ramp. Short runs get an
# interval that gives every ramp this many mask updates instead, with a warning.
UPDATES_PER_SHORT_RAMP = 4


def _fit_update_every(update_every: int, schedule: Schedule) -> int:
    """``update_every``, or a smaller interval when some ramp of ``schedule`` is shorter than it (with a warning)."""
    lengths = [end - start for start, end in schedule.ramps() if end > start]
    if not lengths or min(lengths) >= update_every:
        return update_every
    adapted = max(1, min(lengths) // UPDATES_PER_SHORT_RAMP)
    warnings.warn(f"update_every={update_every} is longer than the shortest sparsity ramp ({min(lengths)} steps), "
                  f"which would jump straight to the target; updating the mask every {adapted} step(s) instead",
                  UserWarning, stacklevel=3)
    return adapted


def _check_pattern(pattern: Pattern, schedule: Schedule, scope: str, min_density: float) -> Pattern:
    """An N:M pattern gives exactly one final sparsity (1 − N/M) and is chosen per row, so per layer."""
    if scope != "layer":
        raise ValueError(f"pattern {pattern} is chosen row by row: use scope='layer', not {scope!r}")
    if min_density:
        raise ValueError(f"pattern {pattern} fixes every row's density at {pattern.n}/{pattern.m}; "
                         f"min_density={min_density:g} does not apply")
    if abs(schedule.final_sparsity - pattern.sparsity) > 1e-9:
        raise ValueError(f"pattern {pattern} keeps {pattern.n} of every {pattern.m} weights, so its sparsity is "
                         f"{pattern.sparsity:g}; final_sparsity {schedule.final_sparsity:g} cannot be reached with it")
    top = schedule.peak_sparsity()
    if top > pattern.sparsity + 1e-9:
        raise ValueError(f"pattern {pattern} gives sparsity {pattern.sparsity:g}, but the schedule reaches {top:g} "
                         "(check the initial / restart sparsity)")
    return pattern


def _zeros(x: torch.Tensor) -> int:
    return int((x == 0).sum())


def _broadcast_masks(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rank 0's masks on every rank (one flat uint8 broadcast; gloo has no bool)."""
    names = list(masks)
    flat = torch.cat([masks[n].reshape(-1) for n in names]).to(torch.uint8)
    if dist.get_backend() == "nccl" and not flat.is_cuda:
        flat = flat.cuda()
    dist.broadcast(flat, src=0)
    return split_like(flat.to(masks[names[0]].device).bool(), {n: masks[n] for n in names})

