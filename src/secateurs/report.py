"""Comparison tables across checkpoints: accuracy, parameters (total and non-zero), MACs, weight-file size and CPU
latency, dense and with sparse kernels (:func:`secateurs.sparse.to_sparse_kernels`, swapped where measured faster).

Latency is the median wall time of a forward pass in eval mode after warm-up, with the thread count pinned
(and recorded) because a shared CPU otherwise makes numbers meaningless.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ._device import device_of
from .flops import count_model
from .io import load_checkpoint
from .sparse.format import weight_bytes

__all__ = ["latency_ms", "nonzero_params", "CheckpointRow", "compare_checkpoints", "markdown_table"]


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, warmup: int = 5,
               repeats: int = 20, threads: int | None = None) -> float:
    """Median forward latency in milliseconds for one batch of ``batch_size``."""
    old_threads, was_training = torch.get_num_threads(), model.training
    x = torch.randn(batch_size, *input_shape, device=device_of(model))
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        model.eval()
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return 1000 * statistics.median(times)


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

    def to_dict(self) -> dict:
        return asdict(self)


def compare_checkpoints(paths: Sequence[str | Path], names: Sequence[str] | None = None, latency: bool = True,
                        threads: int | None = None, repeats: int = 20,
                        trust_model_code: bool = False) -> list[CheckpointRow]:
    rows = []
    for i, path in enumerate(paths):
        ckpt = load_checkpoint(path, trust_model_code=trust_model_code)
        shape = ckpt.spec.input_shape
        cost = count_model(ckpt.model, shape)
        acc = ckpt.summary.get("accuracy")
        b1 = latency_ms(ckpt.model, shape, 1, threads=threads, repeats=repeats) if latency else None
        b64 = latency_ms(ckpt.model, shape, 64, threads=threads, repeats=max(3, repeats // 4)) if latency else None
        s1 = _sparse_latency(ckpt.model, shape, 1, threads, repeats) if latency else None
        s64 = _sparse_latency(ckpt.model, shape, 64, threads, max(3, repeats // 4)) if latency else None
        name = names[i] if names else Path(path).name
        rows.append(CheckpointRow(name, str(path), acc, cost.params, nonzero_params(ckpt.model), cost.macs, b1, b64,
                                  weight_bytes(path), s1, s64))
    return rows


def _sparse_latency(model: nn.Module, shape, batch: int, threads: int | None, repeats: int) -> float:
    """Latency of a copy of ``model`` with sparse kernels wherever they measure faster at ``batch``."""
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
    return latency_ms(fast, shape, batch, threads=threads, repeats=repeats)


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
    return "\n".join(lines)
