"""secateurs: make PyTorch networks smaller and faster by pruning them.

Public surface: model and dataset registries, the exact compute counter, the trainer, checkpoint I/O.
Pruning methods live in :mod:`secateurs.unstructured` (cyclical sparsity) and :mod:`secateurs.structured`
(coupled-channel filter pruning, AutoBot).
"""
from __future__ import annotations

__version__ = "0.1.0"

# Lazily exported names -> the module that defines them (imports stay cheap until used). Even torch is not
# imported by ``import secateurs``: ``python -m secateurs.cli`` must be able to take the current directory off
# ``sys.path`` before torch (which imports tqdm and others) is imported -- see the README, "Trust model".
_LAZY = {
    "count_model": "flops", "count_params": "flops", "CountResult": "flops",
    "load": "io", "load_checkpoint": "io", "save": "io", "ModelSpec": "io",
    "InputError": "errors", "CheckpointError": "errors", "UntrustedCodeError": "errors", "NonFiniteError": "errors",
    "create_model": "models", "list_models": "models", "register_model": "models",
    "get_dataset": "data", "list_datasets": "data", "register_dataset": "data",
    "TrainConfig": "train", "fit": "train", "evaluate": "train", "Callback": "train",
    "OneShot": "schedules", "GMP": "schedules", "Cyclical": "schedules", "make_schedule": "schedules",
    "CyclicalSparsifier": "unstructured", "SparsifierCallback": "unstructured",
    "build_channel_graph": "graph", "explain": "explanation",
    "PruningPlan": "structured", "apply_plan": "structured", "channel_scores": "structured",
    "select_channels": "structured", "export_onnx": "structured", "export_torchscript": "structured",
    "AutoBotConfig": "structured", "autoprune": "structured",
    "save_sparse": "sparse", "to_sparse_kernels": "sparse", "to_semi_structured": "sparse",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'secateurs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
