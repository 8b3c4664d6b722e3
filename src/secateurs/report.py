"""Comparison tables across checkpoints: accuracy, parameters (total and non-zero), MACs, weight-file size and CPU
latency, dense and with sparse kernels (:func:`secateurs.sparse.to_sparse_kernels`, swapped where measured faster).

Latency is the median wall time of a forward pass in eval mode after warm-up, the models timed interleaved with
:mod:`secateurs.timing` (the one timing utility: blocks, alternating order, medians), with the thread count pinned
(and recorded) because a shared CPU otherwise makes numbers meaningless.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ._device import device_of
from .flops import count_model
from .io import load_checkpoint
from .sparse.format import weight_bytes
from .timing import AS_FOUND, STEADY, Timing, loadavg, time_models

__all__ = ["latency_ms", "interleaved_latency_ms", "time_latency", "latency_setting", "latency_record",
           "nonzero_params", "CheckpointRow", "compare_checkpoints", "markdown_table"]


def time_latency(models: Sequence[nn.Module], input_shape: Sequence[int], batch_size: int = 1, warmup: int = 5,
                 repeats: int = 20, threads: int | None = None, budget_s: float = 1.0,
                 progress: bool | None = False, desc: str = "latency") -> Timing:
    """Forward latency of each model for one random batch of ``batch_size``, timed interleaved by
    :func:`secateurs.timing.time_models` (blocks of calls, order alternating, at least ``repeats`` rounds and
    ``budget_s`` seconds): medians, paired ratios to the first model, threads and load average recorded."""
    from ._progress import Progress, progress_mode

    x = torch.randn(batch_size, *input_shape, device=device_of(models[0]))
    with Progress(repeats, f"{desc} (batch {batch_size})", progress_mode(progress), log_done=False) as bar:
        return time_models(models, x, warmup=warmup, min_rounds=repeats, max_rounds=max(repeats, 200),
                           budget_s=budget_s, threads=threads,
                           on_round=lambda r: bar.update(1) if r <= repeats else None)


def interleaved_latency_ms(models: Sequence[nn.Module], input_shape: Sequence[int], batch_size: int = 1,
                           warmup: int = 5, repeats: int = 20, threads: int | None = None,
                           progress: bool | None = False, desc: str = "latency") -> list[float]:
    """Median forward latency in milliseconds of each model for one batch of ``batch_size``, timed interleaved
    (see :func:`time_latency`, which also returns the ratios and the setting)."""
    return time_latency(models, input_shape, batch_size, warmup, repeats, threads, progress=progress, desc=desc).ms


def latency_ms(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, warmup: int = 5,
               repeats: int = 20, threads: int | None = None) -> float:
    """Median forward latency in milliseconds for one batch of ``batch_size`` (one model; see
    :func:`time_latency` to compare models)."""
    return interleaved_latency_ms([model], input_shape, batch_size, warmup, repeats, threads)[0]


def latency_setting(batch_size: int, threads: int, repeats: int, warmup: int = 5,
                    timing: Timing | None = None) -> dict:
    """What a latency figure was measured under (recorded next to it): batch, threads, rounds, load average
    (before and after the measurement when its ``timing`` is given)."""
    base = {"batch_size": batch_size, "threads": threads, "repeats": repeats, "warmup": warmup,
            "statistic": "median of interleaved forward passes", "loadavg_1_5_15min": loadavg(),
            "cpus": os.cpu_count()}
    return base if timing is None else {**base, **timing.setting()}


def nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero: what an unstructured-sparse model really needs to store."""
    return sum(int(torch.count_nonzero(p)) for p in {id(p): p for p in model.parameters()}.values())


@dataclass
class CheckpointRow:
    name: str
    path: str
    accuracy: float | None
    params: int
    nonzero_params: int
    macs: int
    latency_ms_b1: float | None
    latency_ms_b64: float | None
    file_bytes: int | None = None  # model.safetensors, or the compressed sparse weight files
    sparse_latency_ms_b1: float | None = None  # after to_sparse_kernels at that batch size
    sparse_latency_ms_b64: float | None = None
    latency_target: dict | None = None  # a latency-targeted run's record from summary.json (see latency_record)

    def to_dict(self) -> dict:
        return asdict(self)


def compare_checkpoints(paths: Sequence[str | Path], names: Sequence[str] | None = None, latency: bool = True,
                        threads: int | None = None, repeats: int = 20, progress: bool | None = False,
                        trust_model_code: bool = False) -> list[CheckpointRow]:
    """One row per checkpoint; latencies, dense and with sparse kernels, are timed interleaved across all of them
    (see :func:`interleaved_latency_ms`; checkpoints with different input shapes are timed in separate rounds)."""
    ckpts = [load_checkpoint(path, trust_model_code=trust_model_code) for path in paths]
    n = len(ckpts)
    b1, b64, s1, s64 = ([None] * n for _ in range(4))
    if latency:
        by_shape: dict[tuple, list[int]] = {}
        for i, ckpt in enumerate(ckpts):
            by_shape.setdefault(tuple(ckpt.spec.input_shape), []).append(i)
        for shape, idx in by_shape.items():
            for batch, reps, dense_out, sparse_out in ((1, repeats, b1, s1), (64, max(3, repeats // 4), b64, s64)):
                models = [ckpts[i].model for i in idx]
                models += [_sparse_copy(m, shape, batch, threads) for m in models]
                times = interleaved_latency_ms(models, shape, batch, threads=threads, repeats=reps, progress=progress)
                for k, i in enumerate(idx):
                    dense_out[i], sparse_out[i] = times[k], times[len(idx) + k]
    rows = []
    for i, (path, ckpt) in enumerate(zip(paths, ckpts)):
        cost = count_model(ckpt.model, ckpt.spec.input_shape)
        name = names[i] if names else Path(path).name
        rows.append(CheckpointRow(name, str(path), ckpt.summary.get("accuracy"), cost.params,
                                  nonzero_params(ckpt.model), cost.macs, b1[i], b64[i], weight_bytes(path),
                                  s1[i], s64[i], latency_record(ckpt.summary)))
    return rows


def _sparse_copy(model: nn.Module, shape, batch: int, threads: int | None) -> nn.Module:
    """A copy of ``model`` with sparse kernels wherever they measure faster at ``batch`` (``threads`` pinned)."""
    import copy

    from .sparse import to_sparse_kernels

    old = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        fast = copy.deepcopy(model)
        to_sparse_kernels(fast, shape, batch_size=batch)
    finally:
        torch.set_num_threads(old)
    return fast


LATENCY_FIELDS = ("latency_ms_dense", "latency_ms_predicted", "latency_ms_measured", "latency_ms_dense_predicted")


def latency_record(summary: dict) -> dict | None:
    """The latency-target fields of a ``summary.json`` (dense / predicted / measured ms, the setting and the load
    during timing), or ``None`` for a run without a latency target. Values of the wrong type or form are dropped
    (the table then shows '-')."""
    from ._schema import is_number

    if not isinstance(summary, dict) or not any(k in summary for k in LATENCY_FIELDS):
        return None
    rec = {k: summary[k] for k in LATENCY_FIELDS if is_number(summary.get(k))}
    if not rec:  # a MACs-targeted run writes these fields as null
        return None
    setting = summary.get("latency_setting")
    if isinstance(setting, dict):  # a hand-edited file: keep only values of the documented form
        from .cost._names import DTYPE_NAMES, RUNTIMES

        ok = {"batch_size": _positive_int, "threads": _positive_int, "runtime": lambda v: v in RUNTIMES,
              "dtype": lambda v: v in DTYPE_NAMES, "loadavg_before": _loadavg, "loadavg_after": _loadavg,
              "allocator": lambda v: v in (STEADY, AS_FOUND)}
        rec["setting"] = {k: setting[k] for k, valid in ok.items() if k in setting and valid(setting[k])}
    return rec


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _loadavg(v) -> bool:
    from ._schema import is_number

    return isinstance(v, list) and 1 <= len(v) <= 3 and all(is_number(x) for x in v)


def latency_target_table(rows: Sequence[CheckpointRow]) -> str | None:
    """Markdown table of the rows that were pruned to a latency target (``None`` if none was): the numbers their
    summary.json recorded at pruning time, next to the setting they hold for. The predicted ratio is relative to
    the profile's dense latency (its own scale), the measured one to the dense model timed with the pruned one."""
    rows = [r for r in rows if r.latency_target]
    if not rows:
        return None
    lines = ["| model | batch | threads | runtime | dense (ms) | pruned (ms) | measured ratio | predicted (ms) | "
             "predicted ratio | load during timing |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, s = r.latency_target, r.latency_target.get("setting", {})

        def ms(k):
            return f"{t[k]:.3f}" if k in t else "-"

        def ratio(a, b):
            return f"{t[a] / t[b]:.3f}" if a in t and t.get(b) else "-"

        load = s.get("loadavg_before"), s.get("loadavg_after")
        load_s = " -> ".join(f"{v[0]:.2f}" for v in load if isinstance(v, list) and v) or "-"
        lines.append(f"| {r.name} | {s.get('batch_size', '-')} | {s.get('threads', '-')} | {s.get('runtime', '-')} | "
                     f"{ms('latency_ms_dense')} | {ms('latency_ms_measured')} | "
                     f"{ratio('latency_ms_measured', 'latency_ms_dense')} | {ms('latency_ms_predicted')} | "
                     f"{ratio('latency_ms_predicted', 'latency_ms_dense_predicted')} | {load_s} |")
    return "\n".join(lines)


def markdown_table(rows: Sequence[CheckpointRow]) -> str:
    lines = ["| model | accuracy (%) | params | non-zero params | MACs (M) | weights (KiB) | latency b=1 (ms) | "
             "sparse-kernel b=1 (ms) | latency b=64 (ms) | sparse-kernel b=64 (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{100 * r.accuracy:.2f}" if r.accuracy is not None else "-"
        b1 = f"{r.latency_ms_b1:.2f}" if r.latency_ms_b1 is not None else "-"
        b64 = f"{r.latency_ms_b64:.1f}" if r.latency_ms_b64 is not None else "-"
        s1 = f"{r.sparse_latency_ms_b1:.2f}" if r.sparse_latency_ms_b1 is not None else "-"
        s64 = f"{r.sparse_latency_ms_b64:.1f}" if r.sparse_latency_ms_b64 is not None else "-"
        kib = f"{r.file_bytes / 1024:,.1f}" if r.file_bytes is not None else "-"
        lines.append(f"| {r.name} | {acc} | {r.params:,} | {r.nonzero_params:,} | {r.macs / 1e6:.2f} | {kib} | {b1} | "
                     f"{s1} | {b64} | {s64} |")
    target = latency_target_table(rows)
    if target:
        lines += ["", "Latency targets (as measured when pruned, dense and pruned timed interleaved):", "", target]
    return "\n".join(lines)
