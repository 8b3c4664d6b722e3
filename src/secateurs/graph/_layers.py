"""Per-call records of the conv/linear layers of one forward pass, and the exact MACs total of that pass.

The differentiable MACs model (``secateurs.cost.macs``) and ``explain`` need, for every *call* of a conv or linear
layer (a module used twice is two calls), the shapes that fix its cost: MACs = rows · k · c_out · c_in / groups,
where rows = output elements per output channel (batch · spatial positions) and k = kernel elements. Everything else
the exact counter sees (matmuls of attention, functional linears) is a constant that no channel group controls.
MACs follow docs/design.md: one MAC per multiply-add of conv/linear/matmul, *per example*: the counts of the forward
are divided by the batch size (dim 0 of the first input), so a graph traced on any batch reports the same MACs.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..flops import macs_counter
from ._tp_adapter import as_tuple


@dataclass(frozen=True)
class LayerCall:
    module: str  # module name
    op: str  # 'conv' | 'linear'
    in_channels: int
    out_channels: int
    groups: int
    rows: int  # output elements per output channel and example (spatial positions, tokens)
    kernel: int  # kernel elements (1 for linear)

    @property
    def macs(self) -> int:
        return self.rows * self.kernel * self.out_channels * (self.in_channels // self.groups)

    @property
    def depthwise(self) -> bool:
        """Depthwise in the sense that channel removal keeps it depthwise: one input channel per group and one
        output channel per group (channel multipliers > 1 are treated as ordinary grouped convs)."""
        return self.op == "conv" and self.groups > 1 and self.groups == self.in_channels == self.out_channels


def is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


class LayerRecorder:
    """Context manager around *one* forward pass of ``model``: records its conv/linear calls (``calls``) and its exact
    MACs (``macs``), both per example. The channel graph records during Torch-Pruning's trace forward, so building
    a graph costs one forward pass, not two; later uses of the same recorder record nothing."""

    def __init__(self, model: nn.Module, example_inputs: Any):
        inputs = as_tuple(example_inputs)
        self.batch = inputs[0].shape[0] if isinstance(inputs[0], torch.Tensor) and inputs[0].dim() > 0 else 1
        self.model, self.calls, self.macs, self.done = model, [], 0, False
        self.module_macs: dict[str, int] = {}  # module name -> MACs run inside it (children included), per example
        self._stack: contextlib.ExitStack | None = None

    def _hook(self, names: dict):
        batch = self.batch

        def hook(module, inputs, output):
            if isinstance(module, nn.Linear):
                rows = output.numel() // module.out_features // batch
                self.calls.append(LayerCall(names[module], "linear", module.in_features, module.out_features, 1,
                                            rows, 1))
            else:
                rows = output.numel() // module.out_channels // batch
                k = math.prod(module.kernel_size)
                self.calls.append(LayerCall(names[module], "conv", module.in_channels, module.out_channels,
                                            module.groups, rows, k))

        return hook

    def __enter__(self) -> "LayerRecorder":
        self._stack = contextlib.ExitStack()
        if self.done:
            return self
        names = {m: n for n, m in self.model.named_modules()}
        hook = self._hook(names)
        for m in self.model.modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and not getattr(m, "transposed", False):
                self._stack.callback(m.register_forward_hook(hook).remove)
        self._counter = self._stack.enter_context(macs_counter())
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        stack.close()
        if not self.done:
            self.macs = int(self._counter.get_total_flops()) // 2 // self.batch
            root = type(self.model).__name__
            for key, per_op in self._counter.get_flop_counts().items():
                if key == root or key.startswith(f"{root}."):
                    self.module_macs[key[len(root) + 1:]] = int(sum(per_op.values())) // 2 // self.batch
            self.done = True


def record_layers(model: nn.Module, example_inputs: Any) -> tuple[list[LayerCall], int]:
    """Run one forward (no grad) and return the conv/linear calls in execution order and the exact MACs total,
    both per example."""
    rec = recorded(model, example_inputs)
    return rec.calls, rec.macs


def recorded(model: nn.Module, example_inputs: Any) -> LayerRecorder:
    """A ``LayerRecorder`` that has recorded one forward (no grad) of ``model``."""
    with torch.no_grad(), LayerRecorder(model, example_inputs) as rec:
        model(*as_tuple(example_inputs))
    return rec
