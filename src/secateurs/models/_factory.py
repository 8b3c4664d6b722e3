"""Model names -> nn.Module: the zoo registry plus three kinds of outside names.

A model name is one of
  * a zoo name (``resnet56``), registered with ``@register_model("resnet56")``;
  * ``pkg.module:factory`` -- any importable callable, so users prune their own nets without registering them;
  * ``torchvision:<name>`` / ``timm:<name>`` -- optional, only when those libraries import.

Every factory is called with keyword arguments only: ``num_classes``, ``in_channels`` and the caller's extras.
Keyword-only calls keep ``{"name": ..., "kwargs": {...}}`` in a checkpoint enough to rebuild the model.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

from torch import nn

from .._registry import Registry

_MODELS: Registry[nn.Module] = Registry("model")

# Prefixes that select an outside library instead of ``module:factory``.
_EXTERNAL = ("torchvision", "timm")


class ModelName(NamedTuple):
    """A parsed model name: ``source`` is "zoo", "module", "torchvision" or "timm"; ``target`` the rest."""

    source: str
    target: str


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a factory to the zoo under ``name`` (``:`` is reserved for outside names)."""
    if not name or ":" in name:
        raise ValueError(f"model name {name!r} must be non-empty and contain no ':' (reserved for 'module:factory')")
    return _MODELS.register(name)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted zoo names matching a shell-style ``pattern`` (``"resnet*"``). Outside names are not listed."""
    return _MODELS.names(pattern)


def resolve_model_name(name: str) -> ModelName:
    """Parse ``name`` without importing or building anything; raises for unknown zoo names and malformed names.

    Useful to validate a command-line flag before any work starts.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    prefix, sep, rest = name.partition(":")  # first ':' only: "timm:hf-hub:org/repo" keeps its own colon
    if not sep:
        _MODELS.get(name)  # KeyError listing the known names
        return ModelName("zoo", name)
    if not prefix or not rest:
        raise ValueError(f"model name {name!r}: expected 'pkg.module:factory', 'torchvision:<name>' or 'timm:<name>'")
    if prefix in _EXTERNAL:
        return ModelName(prefix, rest)
    return ModelName("module", name)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build the model called ``name``; ``kwargs`` go to its factory unchanged (see each factory's docstring).

    Zoo factories also accept ``input_size`` (int or (H, W); the length for 1-D nets): only models whose
    parameter shapes depend on it (``mlp``) use it, the others ignore it, so generic callers may always pass it.
    ``torchvision:``/``timm:`` names drop it; ``module:factory`` names receive it only if the caller passes it.
    """
    source, target = resolve_model_name(name)
    if source == "zoo":
        return _MODELS.get(target)(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if source == "module":
        return _from_module(target, num_classes, in_channels, kwargs)
    if source == "torchvision":
        return _from_torchvision(target, num_classes, in_channels, kwargs)
    return _from_timm(target, num_classes, in_channels, kwargs)


def _from_module(spec: str, num_classes: int, in_channels: int, kwargs: dict[str, Any]) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"model {spec!r}: cannot import module {module_name!r} ({e})") from e
    factory = module
    for part in attr.split("."):  # "mod:Class.builder" is allowed
        if not hasattr(factory, part):
            raise AttributeError(f"model {spec!r}: module {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TypeError(f"model {spec!r}: {attr!r} is a {type(factory).__name__}, not a callable factory")
    model = factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec!r}: factory returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _import_optional(lib: str, name: str):
    try:
        return importlib.import_module(lib)
    except ImportError as e:
        raise ImportError(
            f"model '{lib}:{name}' needs the optional package {lib!r}, which failed to import ({e}); "
            f"install it with `pip install {lib}` (a build matching your torch)"
        ) from e


def _from_torchvision(name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any]) -> nn.Module:
    models = _import_optional("torchvision", name).models
    # torchvision builders have no input-channel argument; refusing is better than a silent shape error later.
    if in_channels != 3:
        raise ValueError(
            f"model 'torchvision:{name}': torchvision models take 3 input channels, got in_channels={in_channels}"
        )
    kwargs.pop("input_size", None)  # zoo-only hint; torchvision builders reject unknown kwargs
    return models.get_model(name, num_classes=num_classes, **kwargs)


def _from_timm(name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any]) -> nn.Module:
    timm = _import_optional("timm", name)
    kwargs.pop("input_size", None)  # zoo-only hint; pass timm's own ``img_size`` explicitly where a model needs it
    return timm.create_model(name, num_classes=num_classes, in_chans=in_channels, **kwargs)
