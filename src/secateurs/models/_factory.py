"""Model names -> nn.Module: the zoo registry plus three kinds of outside names.

A model name is one of
  * a zoo name (``resnet56``), registered with ``@register_model("resnet56")``;
  * ``pkg.module:factory`` -- any importable callable, so users prune their own nets without registering them;
  * ``torchvision:<name>`` / ``timm:<name>`` -- optional, only when those libraries import.

Every factory is called with keyword arguments only: ``num_classes``, ``in_channels`` and the caller's extras.
Keyword-only calls keep ``{"name": ..., "kwargs": {...}}`` in a checkpoint enough to rebuild the model.

Trust: a name typed by the user is the user's choice, but a name read from a checkpoint is the file author's.
:func:`untrusted_reason` says which checkpoint names would import or fetch code the user never chose (any
``module:factory``; timm hub names; kwargs that make torchvision/timm download or read other files), and
:func:`import_path_without` keeps the current directory and the checkpoint's own directories off ``sys.path``
while a checkpoint's model is built, so a file shipped beside a checkpoint cannot stand in for a real package.
"""
from __future__ import annotations

import importlib
import re
from typing import Any, Callable, NamedTuple

from torch import nn

from .._import_path import import_path_without  # noqa: F401  re-exported: part of the trust story
from .._registry import Registry

_MODELS: Registry[nn.Module] = Registry("model")

# Prefixes that select an outside library instead of ``module:factory``.
_EXTERNAL = ("torchvision", "timm")
# torchvision / timm model names that only pick a local architecture: no hub prefix, no path, no tag.
_PLAIN_EXTERNAL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# kwargs with which torchvision / timm fetch weights or read a file the checkpoint names (timm's checkpoint loader
# is not restricted to tensors): refused in an untrusted checkpoint.
_FETCHING_KWARGS = frozenset({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
                              "weights", "weights_backbone", "cache_dir", "pretrained_strict"})


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


def untrusted_reason(name: str, kwargs: dict[str, Any] | None = None) -> str | None:
    """Why building ``name`` from a checkpoint would run or fetch code the user did not choose; ``None`` if safe.

    Safe: zoo names; ``torchvision:NAME`` / ``timm:NAME`` with a plain NAME and no weight-fetching kwargs.
    Nothing is imported to decide.
    """
    source, target = resolve_model_name(name)
    if source == "zoo":
        return None
    if source == "module":
        return "is not a zoo, torchvision: or timm: name, so building it imports and runs code"
    if not _PLAIN_EXTERNAL_NAME.fullmatch(target):
        return f"is not a plain {source} architecture name (hub names and paths fetch or read outside files)"
    fetching = sorted(_FETCHING_KWARGS.intersection(kwargs or {}))
    if fetching:
        return f"has kwargs {fetching}, with which {source} downloads or reads other files"
    return None


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
