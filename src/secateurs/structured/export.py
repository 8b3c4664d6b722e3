"""Export a (pruned) model for deployment: TorchScript (``torch.jit.trace``) and ONNX.

A physically pruned model is an ordinary ``nn.Module`` with narrower layers, so both exporters see plain convs and
linears; nothing secateurs-specific ends up in the file. Both functions trace in eval mode on ``example`` (a
batch; the batch dimension stays dynamic in the ONNX graph), restore the model's mode, write the file atomically
(temporary file + rename) and return its path.

ONNX: torch >= 2.9 defaults to the ``torch.export``-based exporter, which needs the ``onnxscript`` package; the
TorchScript-based exporter (``dynamo=False``, the default here) needs only ``onnx`` and works offline. Its
deprecation warning is silenced; pass ``dynamo=True`` to use the new exporter when ``onnxscript`` is installed.

Attention layers are traced unfused (``no_attention_fastpath``): in eval/no_grad ``nn.MultiheadAttention`` and
``nn.TransformerEncoderLayer`` would otherwise record ``aten::_native_multi_head_attention`` /
``_transformer_encoder_layer_fwd``, which neither ONNX nor a plain TorchScript consumer supports.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from ..flops import no_attention_fastpath
from .._atomic import atomic_path

__all__ = ["export_torchscript", "export_onnx"]


@contextlib.contextmanager
def _eval_quiet(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad(), no_attention_fastpath():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        model.train(was_training)


def _as_tuple(example: Any) -> tuple:
    return example if isinstance(example, tuple) else (example,)


def export_torchscript(model: nn.Module, example: Any, path: str | os.PathLike, *, check: bool = True) -> Path:
    """Trace ``model`` on ``example`` and save it with ``torch.jit.save`` (load with ``torch.jit.load``).

    ``check``: run the traced module on ``example`` and require outputs equal to the eager model's (atol 1e-5)."""
    with _eval_quiet(model):
        traced = torch.jit.trace(model, _as_tuple(example), check_trace=False)
        if check:
            ref, got = model(*_as_tuple(example)), traced(*_as_tuple(example))
            if not torch.allclose(ref, got, atol=1e-5, rtol=1e-4):
                raise RuntimeError(f"traced model differs from the eager model by {(ref - got).abs().max():.3g}; "
                                   "it may have data-dependent control flow that tracing cannot capture")
        with atomic_path(path) as tmp:
            traced.save(str(tmp))
    return Path(path)


def export_onnx(model: nn.Module, example: Any, path: str | os.PathLike, *, opset: int = 17,
                dynamic_batch: bool = True, dynamo: bool = False) -> Path:
    """Export ``model`` to ONNX (one input ``input``, one output ``logits``; batch dimension dynamic unless
    ``dynamic_batch=False``). The file is checked with ``onnx.checker`` when ``onnx`` is importable."""
    args = _as_tuple(example)
    names = ["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))]
    with _eval_quiet(model), atomic_path(path) as tmp:
        if dynamo:
            torch.onnx.export(model, args, str(tmp), input_names=names, output_names=["logits"],
                              opset_version=opset, dynamo=True, external_data=False,
                              dynamic_shapes=_dynamo_batch(args) if dynamic_batch else None)
        else:
            axes = {n: {0: "batch"} for n in names + ["logits"]} if dynamic_batch else None
            torch.onnx.export(model, args, str(tmp), input_names=names, output_names=["logits"],
                              opset_version=opset, dynamic_axes=axes, dynamo=False)
        try:
            import onnx
        except ImportError:
            pass
        else:
            onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    return Path(path)


def _dynamo_batch(args: tuple) -> tuple:
    batch = torch.export.Dim("batch")
    return tuple({0: batch} for _ in args)
