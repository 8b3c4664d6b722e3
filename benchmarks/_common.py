"""Shared benchmark plumbing: environment record, results files, and the cached dense checkpoints.

Every results file records versions, machine, threads and seeds. Dense checkpoints are trained once by
``dense_baselines.py`` with the recipe below and reused by every pruning benchmark (``dense_checkpoint``).
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
# Small checkpoints are committed so later benchmarks (and sessions) never retrain them;
# large ones (over LARGE_BYTES) stay in the local cache directory.
COMMITTED = ROOT / "checkpoints"
LOCAL = Path(os.environ.get("SECATEURS_CACHE", Path.home() / ".cache" / "secateurs")) / "dense"
LARGE_BYTES = 8 * 2**20

# The default dense recipe: SGD + Nesterov momentum, cosine with 1 warm-up epoch, random-crop augmentation.
# Epoch counts are sized for a 2-core CPU (see results/dense_baselines.md).
RECIPES = {
    "mlp": dict(epochs=20, lr=0.1, batch_size=128, weight_decay=1e-4),
    "lenet5": dict(epochs=10, lr=0.05, batch_size=128, weight_decay=5e-4),
    "cnn1d": dict(epochs=30, lr=0.05, batch_size=128, weight_decay=5e-4),
    "resnet20": dict(epochs=5, lr=0.1, batch_size=128, weight_decay=5e-4),
    "resnet56": dict(epochs=3, lr=0.1, batch_size=128, weight_decay=5e-4),
    "vgg16": dict(epochs=4, lr=0.05, batch_size=128, weight_decay=5e-4),
}


def environment(threads: int) -> dict:
    from secateurs import __version__

    from secateurs._device import cpu_model

    cpu = cpu_model() or platform.machine()
    return {"secateurs": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv, "loadavg_start": os.getloadavg()}


def mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# Student's t, two-sided 95 % (t_{0.975, df}) for df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """t_{0.975, df}: the table up to 30; beyond it the Cornish-Fisher expansion around z = 1.96, which is within
    0.001 of the exact quantile there (2.040 at 31, 2.000 at 60)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci95(values) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided 95 % confidence interval of the mean (Student's t; for paired
    differences, of the mean difference). NaNs are left out; with fewer than two values the interval is unknown
    (nan, nan)."""
    m, s = mean_std(values)
    n = len([v for v in values if v == v])
    if n < 2:
        return m, float("nan"), float("nan")
    half = t975(n - 1) * s / n ** 0.5
    return m, m - half, m + half


def fmt(values, scale: float = 100.0, digits: int = 2) -> str:
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def write_results(stem: str, payload: dict, markdown: str) -> None:
    from secateurs.io import write_json_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"{stem}.json", payload)
    tmp = RESULTS / f".{stem}.md.tmp"
    tmp.write_text(markdown)
    os.replace(tmp, RESULTS / f"{stem}.md")


def rewrite_markdown(stem: str, markdown) -> None:
    """Regenerate ``results/<stem>.md`` from the committed ``<stem>.json`` with ``markdown(payload)`` (no run)."""
    import json

    payload = json.loads((RESULTS / f"{stem}.json").read_text())
    write_results(stem, payload, markdown(payload))


def checkpoint_dir(model: str, data: str, seed: int) -> Path:
    name = f"{model}_{data}_s{seed}"
    committed = COMMITTED / name
    return committed if committed.is_dir() else LOCAL / name


def dense_checkpoint(model: str, data: str = "fashion-mnist", seed: int = 0, train_if_missing: bool = True,
                     threads: int | None = None):
    """Load (or train with the default recipe, then cache) the dense checkpoint for ``model`` on ``data``."""
    from secateurs.io import load_checkpoint

    path = checkpoint_dir(model, data, seed)
    if (path / "model.safetensors").is_file():
        return load_checkpoint(path)
    if not train_if_missing:
        raise FileNotFoundError(f"no cached dense checkpoint {path}; run benchmarks/dense_baselines.py")
    train_dense(model, data, seed, threads=threads)
    return load_checkpoint(checkpoint_dir(model, data, seed))


def train_dense(model_name: str, data_name: str, seed: int, threads: int | None = None,
                train_subset: int | None = None, **overrides) -> dict:
    """Train with RECIPES[model_name] (``overrides`` replace recipe entries, ``train_subset`` trains on the first N
    images of the seeded training split) and save into the committed dir (small) or the local cache (large). The
    summary records both, so a reduced dense run is visible wherever the checkpoint is used."""
    from secateurs.data import get_dataset
    from secateurs.flops import count_model
    from secateurs.io import ModelSpec, save
    from secateurs.models import create_model
    from secateurs.train import TrainConfig, fit

    if threads:
        torch.set_num_threads(threads)
    data = get_dataset(data_name, seed=seed, train_subset=train_subset)
    kwargs = {"num_classes": data.num_classes, "in_channels": data.input_shape[0]}
    if len(data.input_shape) == 3:
        kwargs["input_size"] = data.input_shape[1]
    torch.manual_seed(seed)
    model = create_model(model_name, **kwargs)
    recipe = {**RECIPES.get(model_name, dict(epochs=10, lr=0.1, batch_size=128, weight_decay=5e-4)), **overrides}
    config = TrainConfig(seed=seed, **recipe)
    result = fit(model, data, config)
    cost = count_model(model, data.input_shape)
    summary = {"command": "benchmarks/dense_baselines.py", "model": model_name, "dataset": data_name,
               "seed": seed, "accuracy": result.accuracy, "params": cost.params, "macs": cost.macs,
               "epochs": result.epochs, "elapsed_s": result.elapsed_s,
               "seconds_per_epoch": result.seconds_per_epoch, "train_images_per_s": result.train_images_per_s,
               "recipe": recipe, "train_images": len(data.train_x), "history": result.history, "torch_threads": torch.get_num_threads(),
               "val_accuracy": result.history[-1].get("val_accuracy") if result.history else None}
    spec = ModelSpec(name=model_name, kwargs=kwargs, input_shape=list(data.input_shape),
                     num_classes=data.num_classes, dataset=data_name)
    target = COMMITTED if cost.params * 4 < LARGE_BYTES else LOCAL
    save(target / f"{model_name}_{data_name}_s{seed}", model, spec, summary, overwrite=True)
    return summary
