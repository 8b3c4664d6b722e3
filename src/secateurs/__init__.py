"""secateurs: make PyTorch networks smaller and faster by pruning them.

Public surface: model and dataset registries, the exact compute counter, the trainer, checkpoint I/O.
Pruning methods live in :mod:`secateurs.unstructured` (cyclical sparsity) and :mod:`secateurs.structured`
(coupled-channel filter pruning, AutoBot).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .flops import CountResult, count_model, count_params  # noqa: E402
from .io import ModelSpec, load, load_checkpoint, save  # noqa: E402

__all__ = ["__version__", "count_model", "count_params", "CountResult", "load", "load_checkpoint", "save",
           "ModelSpec", "create_model", "list_models", "get_dataset", "list_datasets"]


def __getattr__(name: str):
    # Registries are imported lazily so `import secateurs` stays cheap.
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    if name in ("get_dataset", "list_datasets"):
        from . import data

        return getattr(data, name)
    raise AttributeError(f"module 'secateurs' has no attribute {name!r}")
