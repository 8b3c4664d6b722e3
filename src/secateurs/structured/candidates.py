"""Two plans for one latency target, and the choice between them on held-out data.

A latency target is met by the plan the latency cost model prices (the criterion's ranking or AutoBot's loss on
measured milliseconds), but on a shared CPU that plan follows the profile's sample: part B of
``benchmarks/latency_target.py`` saw the same pair (latency-priced plan minus its MACs-priced twin at equal measured
latency, after the same fine-tune) change sign between runs, and lose up to 8 points where the latency-priced plan
thinned one stage too far. The same results show what predicts the fine-tuned gap: the accuracy of the two
pruned networks after BatchNorm re-estimation. Of 82 pairs at equal measured latency
(``benchmarks/candidate_evidence.py``), all 18 where the latency-priced plan lost by more than a point after
fine-tuning were behind after BN re-estimation too, and where the BN gap exceeded 5 points the fine-tuned gap had
its sign in 26 of 30 (the opposite in 2, by at most 0.45 point; zero in 2).

So the front door (``structured.prune`` with a latency target, ``LatencyConfig.compare_macs``, on by default)
builds a second candidate: the same method priced by MACs, its MACs reduction searched until the pruned network
*measures* the latency the first candidate measured (aimed within ``EQUAL_LATENCY``, as the benchmark's twins, and
inside the user's target: :func:`rival_window`; it is compared only if it is not slower than that by more than
``EQUAL_LATENCY``, since a slower plan would win by keeping more of the network, and only if it meets the user's
target), and keeps whichever scores the lower validation loss after BatchNorm re-estimation (:func:`plan_score`),
the latency-priced plan otherwise (met or not, as without the comparison). Where both score near chance after
BN re-estimation (accuracy at most twice chance: :func:`near_chance`), that score says nothing (the committed
MobileNetV2 runs at batch 1 kept the rival on 15.4 against 10.0 % and lost 3.8 points to the twin after
fine-tuning), so both are scored again after ``LatencyConfig.recovery_steps`` steps of fine-tuning
(:func:`plan_score` with ``recovery_steps``; NetAdapt's short-term fine-tune, Yang et al. 2018); if that fails
(it diverged, too little data), the BN score stands and the summary says why. Both go to ``summary.json``
(``latency_candidates``, with the reason a MACs-priced plan was not compared or could not be built). The cost: a
second search (and, for AutoBot, a second bottleneck training), a few measured rounds, and two scoring passes over
a few hundred images; where the recovery runs, two more passes and twice ``recovery_steps`` training steps.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    import torch.nn as nn

    from ..cost.measured import LatencyLoop
    from ..graph.groups import ChannelGraph

__all__ = ["EQUAL_LATENCY", "RIVAL_ROUNDS", "SCORE_BATCHES", "RECOVERY_STEPS", "RECOVERY_BATCH", "RECOVERY_RECIPE",
           "Candidate", "Scoring", "scoring_data", "plan_score", "near_chance", "pick", "rival_window"]

EQUAL_LATENCY = 0.02  # the MACs candidate is searched to within this of the latency candidate's measured reduction
RIVAL_ROUNDS = 6  # its measure-and-correct rounds at least (LatencyConfig.rounds when that is more)
SCORE_BATCHES = 8  # batches of 64: BatchNorm re-estimation (training split) and the loss (validation split)
# the recovery fine-tune that scores two candidates near chance (``LatencyConfig.recovery_steps``): 50 batches of 64
# (3,200 images), the recipe of ``autobot.finetune_config`` (SGD momentum 0.9, lr 0.02, weight decay 2e-3) at a
# constant rate and without augmentation
RECOVERY_STEPS = 50
RECOVERY_BATCH = 64
RECOVERY_RECIPE = {"lr": 0.02, "momentum": 0.9, "weight_decay": 2e-3}


def rival_window(measured: float, goal: float, tolerance: float, equal: float = EQUAL_LATENCY
                 ) -> tuple[float, float]:
    """Where the MACs-priced rival's search aims, as ``(reduction, ± tolerance)``: the window in which it is
    eligible, i.e. within ``equal`` of the latency-priced plan's ``measured`` reduction *and* within ``tolerance``
    of the user's ``goal``, by its centre and half-width. A latency-priced plan that measured near the edge of the
    target (0.349 for 0.30 ± 0.05) would otherwise send its rival, aimed at 0.349 ± 0.02, past the target (part B
    of ``benchmarks/latency_target.py`` lost 2 of 4 MobileNetV2 comparisons so). Where the two do not overlap (the
    latency-priced plan itself missed the target) the rival aims at ``measured`` ± ``equal``, as before."""
    lo, hi = max(measured - equal, goal - tolerance), min(measured + equal, goal + tolerance)
    if hi <= lo:
        return measured, equal
    return (lo + hi) / 2, (hi - lo) / 2


@dataclass
class Candidate:
    """One plan for the latency target: which cost priced it, its selection, its measure-and-correct loop, and its
    score (``val_loss``, ``val_accuracy``; ``None`` until scored). ``eligible``: it may be chosen (the MACs candidate
    is not when its search ended slower than the latency candidate, outside the target, or on the same plan:
    ``reason``)."""

    cost: str
    selection: Any
    loop: "LatencyLoop | None"  # None: no plan could be built (``reason``)
    macs_reduction: float | None
    val_loss: float | None = None
    val_accuracy: float | None = None
    score: str | None = None  # "bn" (after BatchNorm re-estimation) or "recovery" (then recovery_steps of training)
    recovery_steps: int = 0  # of the score that decided
    recovery_error: str | None = None  # why the recovery scoring failed (the BN score then decides)
    bn_val_loss: float | None = None  # the BN-re-estimated score, kept when the recovery score replaces it
    bn_val_accuracy: float | None = None
    eligible: bool = True
    reason: str | None = None
    chosen: bool = False
    seconds: float | None = None  # building it (the rival: its training, search and measured rounds)

    def to_dict(self) -> dict[str, Any]:
        m = self.loop.chosen.measured if self.loop is not None else None
        return {"cost": self.cost, "latency_reduction": m and m.reduction, "latency_ms_measured": m and m.pruned_ms,
                "latency_ms_dense": m and m.dense_ms, "flops_reduction": self.macs_reduction, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "score": self.score, "recovery_steps": self.recovery_steps,
                "recovery_error": self.recovery_error, "val_loss_bn": self.bn_val_loss,
                "val_accuracy_bn": self.bn_val_accuracy, "eligible": self.eligible, "reason": self.reason,
                "chosen": self.chosen, "rounds": len(self.loop.rounds) if self.loop else 0, "seconds": self.seconds}


@dataclass(frozen=True)
class Scoring:
    """What every candidate is scored on, materialised once: BatchNorm batches, loss inputs and labels, where the
    loss images come from; ``train(steps)``: the labelled batches of a recovery fine-tune, the same for every
    candidate (drawn lazily)."""

    bn: list
    x: Any
    y: Any
    source: str
    train: Callable[[int], Iterator]


def scoring_data(data: Any, seed: int = 0, batches: int = SCORE_BATCHES) -> Scoring:
    """The :class:`Scoring` of ``data``: for a ``DataSplits``, ``batches`` seeded training batches of 64 for
    BatchNorm and the first ``batches`` × 64 images of the validation split for the loss (the training split's,
    seed + 1, when there is none); for a re-iterable or one-shot iterable of ``(x, y)`` batches, its first
    ``batches`` batches, read once, for both. Raises ``ValueError`` when there is nothing labelled to score on."""
    import torch

    from ..data import DataSplits, seeded_batches

    if isinstance(data, DataSplits):
        bn = list(seeded_batches(data.train_x, batch_size=64, seed=seed, batches=batches))
        n = batches * 64

        def train(steps: int) -> Iterator:  # full batches of seeded passes over the training split, as many as needed
            if len(data.train_x) < RECOVERY_BATCH:
                raise ValueError(f"{len(data.train_x)} training images, fewer than a batch of {RECOVERY_BATCH} to "
                                 "recover on")
            epoch = 0
            while True:
                for b in seeded_batches(data.train_x, data.train_y, batch_size=RECOVERY_BATCH, seed=seed + 2 + epoch):
                    if steps <= 0:
                        return
                    if len(b[0]) < RECOVERY_BATCH:  # the pass's last, partial batch
                        break
                    steps -= 1
                    yield b
                epoch += 1

        if len(data.val_x):
            return Scoring(bn, data.val_x[:n], data.val_y[:n], "validation split", train)
        held = list(seeded_batches(data.train_x, data.train_y, batch_size=64, seed=seed + 1, batches=batches))
        return Scoring(bn, torch.cat([x for x, _ in held]), torch.cat([y for _, y in held]),
                       "training split (no validation split)", train)
    if not isinstance(data, Iterable):
        raise ValueError(f"no data to score candidates on (got {type(data).__name__})")
    pairs = []
    for b in data:
        if not (isinstance(b, (tuple, list)) and len(b) >= 2 and isinstance(b[1], torch.Tensor)
                and isinstance(b[0], torch.Tensor) and len(b[0]) == len(b[1])):
            raise ValueError("scoring candidates needs batches of (inputs, labels)")
        pairs.append(b)
        if len(pairs) >= batches:
            break
    if not pairs:
        raise ValueError("no batches to score candidates on")

    def again(steps: int) -> Iterator:  # the batches read, in turn: the loss images are trained on too
        for i in range(steps):
            yield pairs[i % len(pairs)][:2]

    return Scoring([b[0] for b in pairs], torch.cat([b[0] for b in pairs]), torch.cat([b[1] for b in pairs]),
                   "the given batches (also used for BatchNorm)", again)


def plan_score(dense: "nn.Module", graph: "ChannelGraph", kept, example_inputs: Any, scoring: Scoring,
               recovery_steps: int = 0, seed: int = 0) -> dict[str, Any]:
    """Loss and accuracy on ``scoring`` of ``dense`` pruned to ``kept`` (a copy; ``dense`` is unchanged) after its
    BatchNorm statistics are re-estimated on ``scoring.bn`` and, with ``recovery_steps``, after that many steps of
    fine-tuning on ``scoring.train`` (``RECOVERY_RECIPE``; every parameter trained, the torch RNG seeded by ``seed``
    inside, so that two candidates see the same batches and the same dropout draws); ``classes``: the width of
    the output, for :func:`near_chance`."""
    import torch

    from .._device import device_of
    from ..train import evaluate
    from ..unstructured import reestimate_batchnorm
    from .apply import apply_plan
    from .plan import PruningPlan

    model = copy.deepcopy(dense)
    apply_plan(model, PruningPlan.from_kept(graph, kept), example_inputs, graph=graph, verify=False)
    reestimate_batchnorm(model, scoring.bn)
    if recovery_steps:
        _recover(model, scoring.train(recovery_steps), seed)
    ev = evaluate(model, scoring.x, scoring.y)
    with torch.no_grad():  # the class dimension, as evaluate and cross_entropy read it
        classes = model.eval()(scoring.x[:1].to(device_of(model))).shape[1]
    return {"val_loss": ev["loss"], "val_accuracy": ev["accuracy"], "images": len(scoring.x),
            "source": scoring.source, "classes": int(classes), "recovery_steps": recovery_steps}


def _recover(model: "nn.Module", batches: Iterable, seed: int) -> None:
    """Fine-tune ``model`` (a throw-away copy) in place on ``batches`` of ``(inputs, labels)`` with
    ``RECOVERY_RECIPE``, in training mode and with gradients on whatever the caller's context. Raises
    ``ValueError`` when the loss is not finite (the score of a diverged network would decide nothing)."""
    import math

    import torch
    import torch.nn.functional as F

    from .._device import device_of

    device = device_of(model)
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, **RECOVERY_RECIPE)
    model.train()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda), torch.enable_grad():  # manual_seed reseeds every CUDA device
        torch.manual_seed(seed)
        for step, (x, y) in enumerate(batches):
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            if not math.isfinite(loss.item()):
                raise ValueError(f"the recovery fine-tune diverged (loss {loss.item()} at step {step})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def near_chance(score: dict[str, Any]) -> bool:
    """A :func:`plan_score` that says little of the network: accuracy at most twice chance (``2 / classes``), so
    the BN-re-estimated network's loss is near that of a guess. False without ``classes`` or for one class."""
    classes = score.get("classes")
    return bool(classes and classes > 1 and score["val_accuracy"] <= 2 / classes)


def pick(candidates: list[Candidate]) -> Candidate:
    """The eligible candidate with the lowest validation loss; the first (the latency-priced plan) on a tie or
    when no other is eligible. Marks it ``chosen``."""
    best = candidates[0]
    for c in candidates[1:]:
        if c.eligible and c.val_loss is not None and best.val_loss is not None and c.val_loss < best.val_loss:
            best = c
    best.chosen = True
    return best
