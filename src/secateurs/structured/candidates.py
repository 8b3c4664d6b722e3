"""Two plans for one latency target, and the choice between them on held-out data.

A latency target is met by the plan the latency cost model prices (the criterion's ranking or AutoBot's loss on
measured milliseconds), but on a shared CPU that plan follows the profile's sample: part B of
``benchmarks/latency_target.py`` saw the same pair (latency-priced plan minus its MACs-priced twin at equal measured
latency, after the same fine-tune) change sign between runs, and lose up to 8 points where the latency-priced plan
thinned one stage too far. The same results show what predicts the fine-tuned gap: the accuracy of the two
pruned networks after BatchNorm re-estimation. Of 96 pairs (``benchmarks/candidate_evidence.py``), all 21 where
the latency-priced plan lost by more than a point after fine-tuning were behind after BN re-estimation too, and
where the BN gap exceeded 5 points the fine-tuned gap had its sign in 31 of 38 (the opposite in 5, by at most 0.7
point).

So the front door (``structured.prune`` with a latency target, ``LatencyConfig.compare_macs``, on by default)
builds a second candidate: the same method priced by MACs, its MACs reduction searched until the pruned network
*measures* the latency the first candidate measured (within ``EQUAL_LATENCY``, as the benchmark's twins), and
keeps whichever scores the lower validation loss after BatchNorm re-estimation (:func:`plan_score`). Both meet the
user's target; the record of both goes to ``summary.json`` (``latency_candidates``). The cost: a second search
(and, for AutoBot, a second bottleneck training), a few measured rounds, and two scoring passes over a few hundred
images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import torch.nn as nn

    from ..cost.measured import LatencyLoop
    from ..graph.groups import ChannelGraph

__all__ = ["EQUAL_LATENCY", "SCORE_BATCHES", "Candidate", "plan_score", "pick"]

EQUAL_LATENCY = 0.02  # the MACs candidate measures within this of the latency candidate's measured reduction
SCORE_BATCHES = 8  # batches of 64: BatchNorm re-estimation (training split) and the loss (validation split)


@dataclass
class Candidate:
    """One plan for the latency target: which cost priced it, its selection, its measure-and-correct loop, and its
    score (``val_loss``, ``val_accuracy``; ``None`` until scored). ``eligible``: it may be chosen (the MACs candidate
    is not when its search ended off the latency candidate's measured latency: ``reason``)."""

    cost: str
    selection: Any
    loop: "LatencyLoop"
    macs_reduction: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    eligible: bool = True
    reason: str | None = None
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        m = self.loop.chosen.measured
        return {"cost": self.cost, "latency_reduction": m.reduction, "latency_ms_measured": m.pruned_ms,
                "latency_ms_dense": m.dense_ms, "flops_reduction": self.macs_reduction, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "eligible": self.eligible, "reason": self.reason,
                "chosen": self.chosen, "rounds": len(self.loop.rounds)}


def _score_data(data: Any, seed: int, batches: int) -> tuple[list, Any, Any, str]:
    """(BatchNorm batches, loss inputs, loss labels, where the loss images come from)."""
    import torch

    from ..data import DataSplits, seeded_batches

    if isinstance(data, DataSplits):
        bn = list(seeded_batches(data.train_x, batch_size=64, seed=seed, batches=batches))
        n = batches * 64
        if len(data.val_x):
            return bn, data.val_x[:n], data.val_y[:n], "validation split"
        held = list(seeded_batches(data.train_x, data.train_y, batch_size=64, seed=seed + 1, batches=batches))
        return bn, torch.cat([x for x, _ in held]), torch.cat([y for _, y in held]), "training split (no validation)"
    pairs = []
    for b in data if isinstance(data, Iterable) else ():
        pairs.append(b)
        if len(pairs) >= batches:
            break
    if not pairs:
        raise ValueError("scoring candidates needs batches of (x, y)")
    xs, ys = torch.cat([b[0] for b in pairs]), torch.cat([b[1] for b in pairs])
    return [b[0] for b in pairs], xs, ys, "the given batches"


def plan_score(dense: "nn.Module", graph: "ChannelGraph", kept, example_inputs: Any, data: Any, seed: int = 0,
               batches: int = SCORE_BATCHES) -> dict[str, Any]:
    """Validation loss and accuracy of ``dense`` pruned to ``kept`` (a copy; ``dense`` is unchanged) after its
    BatchNorm statistics are re-estimated on ``batches`` seeded training batches of 64: the loss on the first
    ``batches`` × 64 images of the validation split (the training split's, seed + 1, when there is none; the
    given batches for a plain iterable)."""
    from ..train import evaluate
    from ..unstructured import reestimate_batchnorm
    from .apply import apply_plan
    from .plan import PruningPlan

    bn, x, y, source = _score_data(data, seed, batches)
    model = copy.deepcopy(dense)
    apply_plan(model, PruningPlan.from_kept(graph, kept), example_inputs, graph=graph, verify=False)
    reestimate_batchnorm(model, bn)
    ev = evaluate(model, x, y)
    return {"val_loss": ev["loss"], "val_accuracy": ev["accuracy"], "images": len(x), "source": source}


def pick(candidates: list[Candidate]) -> Candidate:
    """The eligible candidate with the lowest validation loss; the first (the latency-priced plan) on a tie or
    when no other is eligible. Marks it ``chosen``."""
    best = candidates[0]
    for c in candidates[1:]:
        if c.eligible and c.val_loss is not None and best.val_loss is not None and c.val_loss < best.val_loss:
            best = c
    best.chosen = True
    return best
