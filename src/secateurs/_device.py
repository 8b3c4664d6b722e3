"""Where a model lives (the one lookup every module uses to put new tensors beside the weights) and what CPU the
process runs on (the name latency profiles and benchmark results record)."""
from __future__ import annotations

import platform
from pathlib import Path

import torch
from torch import nn


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter; CPU for a model without parameters."""
    ref = next(iter(model.parameters()), None)
    return ref.device if ref is not None else torch.device("cpu")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name", else ``platform.processor()``; "" when neither
    says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""
