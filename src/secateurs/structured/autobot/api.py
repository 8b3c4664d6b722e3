"""``autoprune``: AutoBot end to end on a trained model — bottlenecks, best scores, global threshold (or, as an
ablation, ``AutoBotConfig(scope="local")``'s equal fraction per group), verified surgery. Fine-tuning is the
caller's (``finetune_config`` gives the paper's recipe for ``secateurs.train.fit``)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
import torch.nn as nn

from ..._device import device_of
from ...data import DataSplits
from ...graph.groups import ChannelGraph, build_channel_graph
from ...train import TrainConfig, evaluate
from ..apply import PruneReport, apply_plan
from ..plan import PruningPlan
from ..select import Selection, search_threshold, select_channels
from ..select.threshold import floor_selection
from ..target import DEFAULT_TOLERANCE, Target
from .bottleneck import Bottlenecks
from .training import train_bottlenecks, training_batches

if TYPE_CHECKING:
    from ...cost.base import CostModel


@dataclass
class AutoBotConfig:
    """AutoBot's hyper-parameters; defaults are the paper's CIFAR values (docs/autobot.md)."""

    beta: float = 6.0  # weight of the FLOPs term L_F
    gamma: float = 0.2  # weight of the binarisation term L_B
    lr: float = 0.5  # Adam learning rate of the scores' logits α
    batches: int = 200  # bottleneck training steps (mini-batches)
    batch_size: int = 64
    init: float = 0.9  # initial score λ = sigmoid(α)
    best_fraction: float = 0.4  # best scores are taken from the last 40% of the steps
    tolerance: float = DEFAULT_TOLERANCE  # achieved MACs reduction in [R, R + tolerance] (structured.target)
    max_search_iter: int = 50
    min_fraction: float = 0.0  # every group keeps at least this fraction of its channels (0: at least one)
    free: float = 0.0  # > 0: the threshold search keeps a latency table's free channels (select._free); 0: off
    cost_power: float = 1.0  # the cost term pulls a gate by (its channel's cost)^p: 1 the paper's, 0 all equally
    augment: bool = True  # the training split's usual augmentation
    seed: int = 0
    atol: float = 1e-5  # apply_plan's masked-vs-pruned check (float64)
    # "global": the paper's one threshold over every group's scores; "local": every group keeps the same fraction of
    # its channels, its best-scored ones (AutoBot's choice of channels without its allocation of widths; an ablation;
    # under a latency target it keeps ``free`` channels as set here, 0 by default, not LatencyConfig's)
    scope: str = "global"

    def __post_init__(self) -> None:
        checks = [
            ("scope", self.scope, self.scope in ("global", "local")),
            ("beta", self.beta, self.beta >= 0 and math.isfinite(self.beta)),
            ("gamma", self.gamma, self.gamma >= 0 and math.isfinite(self.gamma)),
            ("lr", self.lr, self.lr > 0 and math.isfinite(self.lr)),
            ("batches", self.batches, isinstance(self.batches, int) and self.batches >= 1),
            ("batch_size", self.batch_size, isinstance(self.batch_size, int) and self.batch_size >= 1),
            ("init", self.init, 0 < self.init < 1),
            ("best_fraction", self.best_fraction, 0 < self.best_fraction <= 1),
            ("tolerance", self.tolerance, 0 < self.tolerance < 1),
            ("max_search_iter", self.max_search_iter, self.max_search_iter >= 1),
            ("min_fraction", self.min_fraction, 0 <= self.min_fraction < 1),
            ("free", self.free, 0 <= self.free < 1),
            ("cost_power", self.cost_power, math.isfinite(self.cost_power) and 0 <= self.cost_power <= 1),
        ]
        for name, value, ok in checks:
            if not ok:
                raise ValueError(f"AutoBotConfig.{name}: invalid value {value!r}")
        if self.scope == "local" and self.min_fraction > 0:
            raise ValueError("AutoBotConfig.min_fraction is a floor of the global search; scope 'local' keeps the "
                             "same fraction of every group already")


def finetune_config(epochs: float, *, lr: float = 0.02, weight_decay: float = 2e-3, momentum: float = 0.9,
                    batch_size: int = 256, seed: int = 0, **kw: Any) -> TrainConfig:
    """The paper's CIFAR fine-tuning recipe (SGD momentum 0.9, lr 0.02, wd 2e-3, batch 256, cosine), scaled to
    ``epochs``; no warm-up (the pruned network is already trained)."""
    kw.setdefault("warmup_epochs", 0.0)
    kw.setdefault("nesterov", False)
    return TrainConfig(epochs=epochs, lr=lr, weight_decay=weight_decay, momentum=momentum, batch_size=batch_size,
                       seed=seed, **kw)


@dataclass
class AutoBotResult:
    plan: PruningPlan
    scores: dict[str, torch.Tensor]  # best λ per prunable group (float64)
    history: list[dict]  # per bottleneck step: loss, ce, l_f, l_b, soft_cost (in the cost model's unit)
    bottleneck_seconds: float
    bottleneck_images: int
    report: PruneReport
    selection: Selection
    best_step: int
    target_macs: float  # the cost the loss aimed at, in the cost model's unit (ms for a latency cost)
    config: AutoBotConfig = field(default_factory=AutoBotConfig)
    accuracy_source: float | None = None  # test accuracy of the model handed in (None: not evaluated)
    accuracy: float | None = None  # test accuracy after pruning, before any fine-tuning
    target: Target | None = None  # what was asked (its cost: MACs or latency); None: a MACs target_macs

    def __str__(self) -> str:
        """A small table: accuracy, MACs and params before and after, and how the selection was made."""
        r, sel = self.report, self.selection
        how = (f"one global threshold θ = {sel.threshold:.4g}" if sel.threshold is not None else
               "local (every group keeps the same fraction, its best-scored channels)" if sel.method == "local" else
               f"{sel.method} (no single threshold θ hit the target; channels taken in score order)")

        def acc(v):
            return f"{100 * v:.2f}" if v is not None else "-"

        rows = [("accuracy (%)", acc(self.accuracy_source), acc(self.accuracy)),
                ("MACs (M)", f"{r.macs_before / 1e6:.3f}", f"{r.macs_after / 1e6:.3f}"),
                ("params", f"{r.params_before:,}", f"{r.params_after:,}")]
        width = max(len(a) for _, a, _ in rows + [("", "source", "")])
        if self.target is not None:
            asked = f"{self.target.reduction:.2%} less {'MACs' if self.target.cost == 'macs' else self.target.cost}"
        else:
            asked = f"{1 - self.target_macs / max(r.macs_before, 1):.2%}"
        lines = [f"AutoBot: {r.macs_reduction:.2%} fewer MACs (target {asked}), {r.params_reduction:.2%} fewer params",
                 f"{'':13s} {'source':>{width}s}  pruned (before fine-tuning)"]
        lines += [f"{name:13s} {a:>{width}s}  {b}" for name, a, b in rows]
        lines.append(f"selection: {how}; bottlenecks {len(self.history)} steps, {self.bottleneck_images:,} images "
                     f"in {self.bottleneck_seconds:.1f}s (best scores from step {self.best_step})")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (no tensors)."""
        return {
            "macs": self.report.macs_after, "macs_dense": self.report.macs_before,
            "flops_reduction": self.report.macs_reduction, "params": self.report.params_after,
            "params_dense": self.report.params_before, "params_reduction": self.report.params_reduction,
            "widths": {g: len(k) for g, k in sorted(self.plan.groups.items())},
            "widths_dense": dict(sorted(self.plan.widths.items())),
            "bottleneck_seconds": self.bottleneck_seconds, "bottleneck_images": self.bottleneck_images,
            "best_step": self.best_step, "threshold": self.selection.threshold,
            "selection_method": self.selection.method, "max_abs_diff": self.report.max_abs_diff,
            "autobot": asdict(self.config),
        }


def autoprune(
    model: nn.Module, data: DataSplits | Iterable, flops_reduction: float, *, config: AutoBotConfig | None = None,
    example_inputs: Any = None, graph: ChannelGraph | None = None, progress: bool | None = None,
    evaluate_test: bool = True, round_to: int = 1, cost: "CostModel | None" = None,
    choose: "Callable[[Callable[[Target], Selection]], Selection] | None" = None,
) -> AutoBotResult:
    """Prune ``model`` **in place** with AutoBot so that its MACs drop by ``flops_reduction`` R: the achieved
    reduction lies in ``[R, R + config.tolerance]`` (``flops_reduction`` may also be a ``Target``).

    ``data``: a ``DataSplits`` (its training split, with augmentation) or a re-iterable of ``(x, y)`` batches.
    ``example_inputs``: a batch for tracing (default: one training image); batch 1 gives per-image MACs.
    The model's weights, BN statistics, ``requires_grad`` flags and mode are unchanged except for the removed
    channels; no hook stays behind. Fine-tune afterwards with ``secateurs.train.fit(model, data,
    finetune_config(epochs))``. ``evaluate_test``: with a ``DataSplits``, record the test accuracy before and after
    pruning in the result (``accuracy_source``, ``accuracy``; ``print(result)`` shows them).
    ``round_to``: every pruned group keeps a multiple of that many channels. ``cost``: the cost model the target
    reduces and the loss prices (default: the target's, MACs); ``choose``: given the search on the trained scores
    (``Target -> Selection``: the threshold search, or the local selection with ``config.scope="local"``), return
    the selection to apply (the latency target's
    measure-and-correct loop; default: the search at ``target``).
    """
    config = config or AutoBotConfig()
    target = flops_reduction if isinstance(flops_reduction, Target) else None
    if target is None:
        if not (isinstance(flops_reduction, (int, float)) and 0 < flops_reduction < 1):
            raise ValueError(f"flops_reduction must be in (0, 1), got {flops_reduction!r}")
        target = Target(float(flops_reduction), config.tolerance)
    device = device_of(model)
    if example_inputs is None:
        if not isinstance(data, DataSplits):
            raise ValueError("example_inputs is required when data is not a DataSplits")
        example_inputs = data.train_x[:1]
    example_inputs = example_inputs.to(device) if isinstance(example_inputs, torch.Tensor) else example_inputs
    graph = graph if graph is not None else build_channel_graph(model, example_inputs)
    if not graph.prunable_groups():
        raise ValueError("the model has no prunable channel group (see `secateurs explain`)")
    cost = cost if cost is not None else target.cost_model(graph)
    goal = target.budget(cost.dense)  # the loss aims at the budget: at most (1 - R) of the dense cost
    if int(round_to) != round_to or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    target.check_reachable(cost, *floor_selection({g.id: g.width for g in graph.prunable_groups()}, round_to,
                                                  config.min_fraction))

    test = evaluate_test and isinstance(data, DataSplits) and len(data.test_x) > 0
    accuracy_source = evaluate(model, data.test_x, data.test_y)["accuracy"] if test else None
    bottlenecks = Bottlenecks(graph, config.init, device=device)
    batches = training_batches(data, config.batch_size, config.seed, config.augment)
    run = train_bottlenecks(model, bottlenecks, cost, batches, steps=config.batches, target_macs=goal,
                            beta=config.beta, gamma=config.gamma, lr=config.lr,
                            best_fraction=config.best_fraction, cost_power=config.cost_power, progress=progress)
    def search(t: Target) -> Selection:
        if config.scope == "local":  # ranked by α: the order of λ = sigmoid(α), without λ's saturated ties
            return select_channels(graph, run.alphas, t, scope="local", round_to=round_to, cost=cost,
                                   normalize=None, free=config.free)
        return search_threshold(run.scores, cost, t, alphas=run.alphas, max_iter=config.max_search_iter,
                                round_to=round_to, min_fraction=config.min_fraction, free=config.free)

    selection = search(target) if choose is None else choose(search)
    plan = PruningPlan.from_kept(graph, selection.kept, meta={
        "method": "autobot", target.argument: target.reduction, "achieved": selection.reduction,
        "threshold": selection.threshold, "selection": selection.method, "best_step": run.best_step,
        **{k: v for k, v in asdict(config).items() if k in ("beta", "gamma", "lr", "batches", "batch_size", "seed",
                                                                 "min_fraction", "free", "cost_power", "scope")},
    })
    report = apply_plan(model, plan, example_inputs, graph=graph, atol=config.atol)
    accuracy = evaluate(model, data.test_x, data.test_y)["accuracy"] if test else None
    return AutoBotResult(plan, run.scores, run.history, run.seconds, run.images, report, selection, run.best_step,
                         goal, config, accuracy_source, accuracy, target)
