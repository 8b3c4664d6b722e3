"""A pruning result as data: group id -> kept channel indices.

Group ids are "<root layer>:out" (see ``secateurs.graph.groups``), fixed by the architecture, so a plan computed on
one model applies to any fresh instance of it (``apply_plan``), can be stored in a checkpoint's ``plan`` field
(``to_dict``), diffed and replayed. Groups a plan does not mention keep all their channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..graph.groups import ChannelGraph

FORMAT_VERSION = 1


@dataclass
class PruningPlan:
    groups: dict[str, list[int]]  # kept channel indices (sorted, unique) per group
    widths: dict[str, int]  # full width per group, to check the plan against the model it is applied to
    model_spec: dict[str, Any] | None = None  # optional: what to rebuild (io.ModelSpec as a dict)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. criterion, target, seed

    def __post_init__(self):
        self.groups = {g: sorted({int(i) for i in idx}) for g, idx in self.groups.items()}
        for g, kept in self.groups.items():
            if g not in self.widths:
                raise ValueError(f"plan lists group {g!r} without its width")
            if not kept:
                raise ValueError(f"plan keeps no channel of group {g!r}; every group keeps at least one")
            if kept[0] < 0 or kept[-1] >= self.widths[g]:
                raise ValueError(f"plan keeps channels {kept} of group {g!r}, which has {self.widths[g]}")

    @classmethod
    def from_kept(cls, graph: ChannelGraph, kept: Mapping[str, Sequence[int]], **kw) -> "PruningPlan":
        """Plan for ``graph`` keeping ``kept[group]``; groups not listed keep everything."""
        widths = graph.widths()
        missing = [g for g in kept if g not in widths]
        if missing:
            raise KeyError(f"groups {missing} are not in the graph")
        return cls({g: list(v) for g, v in kept.items()}, {g: widths[g] for g in kept}, **kw)

    def removed(self) -> dict[str, list[int]]:
        """Group id -> removed channel indices (only groups that lose channels)."""
        out = {}
        for g, kept in self.groups.items():
            drop = sorted(set(range(self.widths[g])) - set(kept))
            if drop:
                out[g] = drop
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "groups": {g: list(v) for g, v in sorted(self.groups.items())},
            "widths": dict(sorted(self.widths.items())),
            "model_spec": self.model_spec,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PruningPlan":
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported plan version {d.get('version')!r} (expected {FORMAT_VERSION})")
        return cls(
            {g: list(v) for g, v in d["groups"].items()}, {g: int(w) for g, w in d["widths"].items()},
            d.get("model_spec"), dict(d.get("meta") or {}),
        )

    def summary(self) -> str:
        rows = [(g, len(k), self.widths[g]) for g, k in sorted(self.groups.items())]
        kept = sum(r[1] for r in rows)
        full = sum(r[2] for r in rows)
        lines = [f"{'group':<40} {'kept':>6} {'width':>6}"]
        lines += [f"{g:<40} {k:>6} {w:>6}" for g, k, w in rows]
        lines.append(f"{len(rows)} groups, {kept}/{full} channels kept ({kept / max(full, 1):.1%})")
        return "\n".join(lines)


def diff(a: PruningPlan, b: PruningPlan) -> dict[str, dict[str, Any]]:
    """Per group that differs: kept counts in a and b (``None``: not in that plan, i.e. all kept) and the channels
    kept only by a / only by b. Empty when the plans are equivalent."""
    out = {}
    for g in sorted(set(a.groups) | set(b.groups)):
        width = a.widths.get(g, b.widths.get(g))
        ka = set(a.groups.get(g, range(width)))
        kb = set(b.groups.get(g, range(width)))
        if ka != kb or a.widths.get(g, width) != b.widths.get(g, width):
            out[g] = {
                "a": len(ka) if g in a.groups else None,
                "b": len(kb) if g in b.groups else None,
                "only_a": sorted(ka - kb),
                "only_b": sorted(kb - ka),
            }
    return out


def compose_plans(first: PruningPlan, second: PruningPlan) -> PruningPlan:
    """The plan equivalent to applying ``first`` and then ``second`` (computed on the model ``first`` produced):
    indices of ``second`` are positions among ``first``'s kept channels. Used to re-prune a pruned checkpoint,
    whose ``model.json`` must replay one plan on a fresh dense model."""
    groups: dict[str, list[int]] = {}
    widths = dict(first.widths)
    for g, kept in first.groups.items():
        groups[g] = list(kept)
    for g, idx in second.groups.items():
        base = groups.get(g)
        if base is None:
            groups[g] = list(idx)
            widths[g] = second.widths[g]
            continue
        if second.widths[g] != len(base):
            raise ValueError(f"group {g!r}: the second plan expects width {second.widths[g]}, the first keeps "
                             f"{len(base)}")
        groups[g] = [base[i] for i in idx]
    meta = {**first.meta, **second.meta, "composed_of": [first.meta, second.meta]}
    return PruningPlan(groups, widths, first.model_spec or second.model_spec, meta)
