"""Which tensors are prunable: conv and linear weights by default, narrowed by name patterns and options."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

from torch import nn

__all__ = ["Target", "DEFAULT_LAYER_TYPES", "select_prunable", "unwrap", "weight_of"]

DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(eq=False)
class Target:
    """One prunable tensor: ``module.<attr>`` is the parameter ``param``, known by ``name`` (e.g. ``fc1.weight``)."""

    name: str
    module: nn.Module
    attr: str
    param: nn.Parameter

    @property
    def numel(self) -> int:
        return self.param.numel()


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (names without ``module.``)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def weight_of(module: nn.Module) -> nn.Parameter | None:
    """``module``'s ``weight`` parameter; for a parametrised module, the tensor kept in ``.parametrizations``."""
    param = module._parameters.get("weight")
    if param is None:
        plist = getattr(getattr(module, "parametrizations", None), "weight", None)
        param = getattr(plist, "original", None)
    return param


def select_prunable(model: nn.Module, *, include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                    layer_types: Sequence[type[nn.Module]] = DEFAULT_LAYER_TYPES,
                    keep_first_dense: bool = False, keep_last_dense: bool = False) -> list[Target]:
    """The ``weight`` of every module of one of ``layer_types``, in registration order.

    ``include`` / ``exclude`` are fnmatch patterns on parameter names (``"features.*"``, ``"*.0.weight"``);
    a tensor is kept if it matches some ``include`` pattern (all, when ``include`` is None) and no ``exclude``
    pattern. ``keep_first_dense`` / ``keep_last_dense`` drop the first / last of the remaining layers in module
    registration order (the usual stem / classifier for the zoo's models; for models whose registration order
    differs from execution order, name the layers with ``exclude`` instead). A tensor shared by several modules
    (tied weights) is listed once.
    """
    model = unwrap(model)
    types = tuple(layer_types)
    out: list[Target] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        if not isinstance(module, types):
            continue
        param = weight_of(module)
        if param is None or not param.requires_grad or id(param) in seen:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        if include is not None and not any(fnmatch.fnmatchcase(name, pat) for pat in include):
            continue
        if any(fnmatch.fnmatchcase(name, pat) for pat in exclude):
            continue
        seen.add(id(param))
        out.append(Target(name, module, "weight", param))
    if keep_first_dense and out:
        out = out[1:]
    if keep_last_dense and out:
        out = out[:-1]
    return out
