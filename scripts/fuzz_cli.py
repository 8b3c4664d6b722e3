"""Run every secateurs command against a matrix of bad inputs and count what happens.

Every case is a command line plus files crafted in its own temporary directory (broken and hostile checkpoints,
state files, data directories, output paths that collide with inputs, numbers that overflow). A case should end
in a *clear error*: exit status 2 and an error line, no traceback. The table counts

* tracebacks (an exception escaped, or "Traceback" on stderr),
* exit-0 surprises (the command succeeded on input it should refuse),
* code executed (a hostile file's payload ran: it writes a marker file),
* files changed that should not be (any input file changed or removed, or an output appeared).

Commands run in this process (``secateurs.cli.main``) so the matrix takes a minute, not an hour of interpreter
start-ups; the few cases about the import path run ``python -m secateurs.cli`` in a subprocess, as a user would.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/fuzz_cli.py [--out benchmarks/results/fuzz_cli]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import pickle
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
KW = {"num_classes": 10, "in_channels": 1, "input_size": 8}
CASE_TIMEOUT_S = 60


@dataclass
class Case:
    name: str
    argv: list[str]  # may hold {d} (the case directory), {c} (its checkpoint), {o} (an output path)
    craft: Callable[[Path], None] = lambda d: None
    subprocess: bool = False
    group: str = ""


@dataclass
class Outcome:
    name: str
    group: str
    code: int | None
    verdict: str
    stderr: str
    code_executed: bool = False
    damaged: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------- crafting
def good_checkpoint(path: Path, name: str = "mlp") -> Path:
    from secateurs.io import ModelSpec, save
    from secateurs.models import create_model

    spec = ModelSpec(name=name, kwargs=dict(KW), input_shape=[1, 8, 8], num_classes=10, dataset="digits")
    save(path, create_model("mlp", **KW), spec, {"accuracy": 0.5})
    return path


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def setter(key, value):
    return lambda d: d.__setitem__(key, value)


def dropper(key):
    return lambda d: d.pop(key, None)


def edit_weights(ckpt: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "model.safetensors"))
    fn(state)
    save_file(state, str(ckpt / "model.safetensors"))


def first_value(state, value):
    next(iter(state.values())).view(-1)[0] = value


def marker_code(d: Path) -> str:
    return f"open({str(d / 'PWNED')!r}, 'w').write('ran')\n"


def hub_repo(d: Path) -> Path:
    repo = d / "hubrepo"
    repo.mkdir(exist_ok=True)
    (repo / "hubconf.py").write_text(marker_code(d) + "def net(**kw):\n    raise SystemExit(0)\n")
    return repo


def model_json(change):
    return lambda d: edit_json(d / "c" / "model.json", change)


def summary_json(change):
    return lambda d: edit_json(d / "c" / "summary.json", change)


def write(rel: str, data: bytes | str):
    def craft(d: Path):
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return craft


def local_module(d: Path):
    ckpt = d / "c"
    edit_json(ckpt / "model.json", setter("name", "c.evil:make"))
    (ckpt / "__init__.py").write_text("")
    (ckpt / "evil.py").write_text(marker_code(d) + "def make(**kw):\n    pass\n")


def hub_load(d: Path):
    edit_json(d / "c" / "model.json", lambda m: m.update(
        name="torch.hub:load", kwargs={"repo_or_dir": str(hub_repo(d)), "model": "net", "source": "local"}))


def logging_truncate(d: Path):
    (d / "precious.txt").write_text("keep")
    edit_json(d / "c" / "model.json", lambda m: m.update(
        name="logging:basicConfig", kwargs={"filename": str(d / "precious.txt"), "filemode": "w"}))


def poisoned_package(name: str, plan: bool):
    def craft(d: Path):
        pkg = d / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(marker_code(d) + "raise ImportError('fake')\n")
        if plan:
            edit_json(d / "c" / "model.json", setter("plan", {"version": 1, "groups": {"net.0:out": [0, 1]},
                                                              "widths": {"net.0:out": 300}}))
    return craft


def evil_pickle(d: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (exec, (marker_code(d),))

    return pickle.dumps({"format": "secateurs-train-state", "version": 1, "x": Evil()})


def state_file(kind: str):
    def craft(d: Path):
        p = d / "state.pt"
        if kind == "empty":
            p.write_bytes(b"")
        elif kind == "garbage":
            p.write_bytes(os.urandom(2048))
        elif kind == "list":
            torch.save([1, 2, 3], p)
        elif kind == "no config":
            torch.save({"format": "secateurs-train-state", "version": 1}, p)
        elif kind == "wrong format":
            torch.save({"format": "other"}, p)
        elif kind == "future version":
            torch.save({"format": "secateurs-train-state", "version": 99}, p)
        elif kind == "bad types":
            torch.save({"format": "secateurs-train-state", "version": 1, "config": {}, "model": [],
                        "optimizer": {}, "scheduler": {}, "history": [], "callbacks": [], "rng": torch.zeros(3)}, p)
        elif kind == "pickle with code":
            p.write_bytes(evil_pickle(d))
        elif kind == "torch zip with code":
            buf = io.BytesIO()
            torch.save({"a": 1}, buf)
            p.write_bytes(evil_pickle(d))
    return craft


def idx_dir(kind: str):
    """A --data-dir for fashion-mnist: empty, incomplete, or with corrupt IDX files."""
    import gzip

    def craft(d: Path):
        data = d / "data"
        data.mkdir()
        names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"]
        if kind == "empty":
            return
        if kind == "incomplete":
            for n in names[:2]:
                (data / n).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
        elif kind == "garbage":
            for n in names:
                (data / n).write_bytes(os.urandom(64))
        elif kind == "truncated gzip":
            for n in names:
                (data / f"{n}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 64)[:-10])
        elif kind == "huge dims":
            for n in names:
                (data / n).write_bytes(b"\x00\x00\x08\x03" + (2 ** 31 - 1).to_bytes(4, "big") * 3)
    return craft


def cifar_pickle(d: Path):
    folder = d / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    blob = evil_pickle(d)
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / n).write_bytes(blob)


# ----------------------------------------------------------------------------------------------- the matrix
CRAFTED_CHECKPOINTS: dict[str, Callable[[Path], None]] = {
    "safetensors empty": write("c/model.safetensors", b""),
    "safetensors garbage": write("c/model.safetensors", os.urandom(4096)),
    "safetensors truncated": lambda d: (d / "c/model.safetensors").write_bytes(
        (d / "c/model.safetensors").read_bytes()[:200]),
    "safetensors huge header": write("c/model.safetensors", (1 << 60).to_bytes(8, "little")),
    "safetensors missing tensor": lambda d: edit_weights(d / "c", lambda s: s.pop(next(iter(s)))),
    "safetensors wrong shape": lambda d: edit_weights(d / "c", lambda s: s.__setitem__(next(iter(s)),
                                                                                        torch.zeros(2))),
    "weights NaN": lambda d: edit_weights(d / "c", lambda s: first_value(s, float("nan"))),
    "weights Inf": lambda d: edit_weights(d / "c", lambda s: first_value(s, float("-inf"))),
    "model.json empty": write("c/model.json", ""),
    "model.json garbage": write("c/model.json", b"\xff\xfe{{"),
    "model.json list": write("c/model.json", "[]"),
    "model.json deep": write("c/model.json", "[" * 200000 + "]" * 200000),
    "model.json missing": lambda d: (d / "c/model.json").unlink(),
    "format wrong": model_json(setter("format", "onnx")),
    "version future": model_json(setter("version", 7)),
    "version string": model_json(setter("version", "1")),
    "name missing": model_json(dropper("name")),
    "name null": model_json(setter("name", None)),
    "name unknown zoo": model_json(setter("name", "resnet9000")),
    "name unimportable": model_json(setter("name", "no_such_module_xyz:make")),
    "name colon only": model_json(setter("name", ":")),
    "kwargs list": model_json(setter("kwargs", [1, 2])),
    "kwargs unknown": model_json(setter("kwargs", {**KW, "bogus": 1})),
    "kwargs wrong type": model_json(setter("kwargs", {**KW, "hidden": "x"})),
    "kwargs huge width": model_json(setter("kwargs", {**KW, "hidden": [10 ** 12]})),
    "kwargs bad key": model_json(setter("kwargs", {"not an identifier": 1})),
    "input_shape missing": model_json(dropper("input_shape")),
    "input_shape string": model_json(setter("input_shape", "1x8x8")),
    "input_shape zero": model_json(setter("input_shape", [1, 0, 8])),
    "input_shape huge": model_json(setter("input_shape", [3, 65536, 65536])),
    "input_shape wrong": model_json(setter("input_shape", [3, 32, 32])),
    "num_classes string": model_json(setter("num_classes", "ten")),
    "plan list": model_json(setter("plan", [])),
    "plan bad version": model_json(setter("plan", {"version": 2, "groups": {}, "widths": {}})),
    "plan missing widths": model_json(setter("plan", {"version": 1, "groups": {"g": [0]}})),
    "plan out of range": model_json(setter("plan", {"version": 1, "groups": {"net.0:out": [999]},
                                                    "widths": {"net.0:out": 300}})),
    "plan unknown group": model_json(setter("plan", {"version": 1, "groups": {"x:out": [0]},
                                                     "widths": {"x:out": 2}})),
    "plan wrong width": model_json(setter("plan", {"version": 1, "groups": {"net.0:out": [0]},
                                                   "widths": {"net.0:out": 3}})),
    "sparsity bad tensors": model_json(setter("sparsity", {"tensors": "all"})),
    "sparsity unknown tensor": model_json(setter("sparsity", {"tensors": ["nope.weight"]})),
    "summary list": write("c/summary.json", "[]"),
    "summary string accuracy": summary_json(setter("accuracy", "0.9")),
    "summary NaN": write("c/summary.json", '{"accuracy": NaN}'),
    "summary garbage": write("c/summary.json", "{"),
}

HOSTILE_CHECKPOINTS: dict[str, Callable[[Path], None]] = {
    "torch.hub:load local hubconf": hub_load,
    "logging:basicConfig truncates": logging_truncate,
    "os:system": model_json(lambda m: m.update(name="os:system", kwargs={"command": "touch PWNED"})),
    "builtins:exec": model_json(lambda m: m.update(name="builtins:exec", kwargs={})),
    "module inside checkpoint": local_module,
    "timm hf-hub": model_json(setter("name", "timm:hf-hub:evil/model")),
    "torchvision weights": model_json(lambda m: m.update(name="torchvision:resnet18",
                                                         kwargs={"weights": "DEFAULT"})),
}

CHECKPOINT_COMMANDS: dict[str, list[str]] = {
    "info": ["info", "--checkpoint", "{c}"],
    "explain": ["explain", "--checkpoint", "{c}"],
    "report": ["report", "{c}", "--no-latency", "--out", "{o}.md"],
    "export": ["export", "--checkpoint", "{c}", "--format", "torchscript", "--out", "{o}.pt"],
    "prune": ["prune", "--checkpoint", "{c}", "--data", "digits", "--criterion", "l1", "--flops-reduction", "0.3",
              "--out", "{o}", "--quiet"],
    "finetune": ["finetune", "--checkpoint", "{c}", "--data", "digits", "--epochs", "1", "--out", "{o}",
                 "--quiet"],
    "sparsify": ["sparsify", "--checkpoint", "{c}", "--data", "digits", "--sparsity", "0.5", "--epochs", "1",
                 "--out", "{o}", "--quiet"],
    "autoprune": ["autoprune", "--checkpoint", "{c}", "--data", "digits", "--flops-reduction", "0.3",
                  "--batches", "2", "--out", "{o}", "--quiet"],
    "profile": ["profile", "--checkpoint", "{c}", "--held-out", "1", "--time-budget", "0.2", "--out", "{o}.json"],
}

TRAIN = ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--quiet", "--out", "{o}"]
SPARSIFY = ["sparsify", "--model", "mlp", "--data", "digits", "--sparsity", "0.5", "--epochs", "1", "--quiet",
            "--out", "{o}"]
FINETUNE = CHECKPOINT_COMMANDS["finetune"]
AUTOPRUNE = CHECKPOINT_COMMANDS["autoprune"]
PRUNE = CHECKPOINT_COMMANDS["prune"]
PROFILE = CHECKPOINT_COMMANDS["profile"]
LATENCY_PRUNE = PRUNE[:7] + ["--latency-reduction", "0.3"] + PRUNE[9:]

FLAG_CASES: list[tuple[str, list[str]]] = [
    *[(f"train --lr {v}", TRAIN + ["--lr", v]) for v in ("1e308", "nan", "inf", "-1", "0", "x", "1e4")],
    *[(f"train --epochs {v}", TRAIN[:5] + ["--epochs", v] + TRAIN[7:]) for v in ("1e18", "1e308", "0", "-1",
                                                                                  "nan")],
    *[(f"train --batch-size {v}", TRAIN + ["--batch-size", v]) for v in ("0", "1e9", "5000", "1.5")],
    *[(f"train --seed {v}", TRAIN + ["--seed", v]) for v in ("-1", "1e30", "abc")],
    *[(f"train --threads {v}", TRAIN + ["--threads", v]) for v in ("0", "1e9")],
    *[(f"train --weight-decay {v}", TRAIN + ["--weight-decay", v]) for v in ("1e308", "-1")],
    *[(f"train --momentum {v}", TRAIN + ["--momentum", v]) for v in ("1", "-0.1")],
    *[(f"train --train-subset {v}", TRAIN + ["--train-subset", v]) for v in ("0", "1e12")],
    ("train --val-size 1e12", TRAIN + ["--val-size", "1e12"]),
    ("train --max-steps 0", TRAIN + ["--max-steps", "0"]),
    ("train --model unknown", ["train", "--model", "resnet9000", "--data", "digits", "--out", "{o}"]),
    ("train --model os:system", ["train", "--model", "os:getcwd", "--data", "digits", "--out", "{o}"]),
    ("train --data unknown", ["train", "--model", "mlp", "--data", "imagenet", "--out", "{o}"]),
    *[(f"sparsify --sparsity {v}", SPARSIFY[:5] + ["--sparsity", v] + SPARSIFY[7:]) for v in
      ("1", "0.99999", "-0.1", "nan", "2")],
    ("sparsify --cycles 0", SPARSIFY + ["--cycles", "0"]),
    ("sparsify --cycles 1e9", SPARSIFY + ["--cycles", "1e9"]),
    ("sparsify --update-every 0", SPARSIFY + ["--update-every", "0"]),
    ("sparsify --ramp 0", SPARSIFY + ["--ramp", "0"]),
    ("sparsify --begin-epochs 1e308", SPARSIFY + ["--begin-epochs", "1e308"]),
    ("sparsify --min-density 1", SPARSIFY + ["--min-density", "1"]),
    ("sparsify --include nothing", SPARSIFY + ["--include", "nothing*"]),
    ("sparsify --restart on gmp", SPARSIFY + ["--schedule", "gmp", "--restart-sparsity", "0.2"]),
    ("sparsify no --out", SPARSIFY[:-2]),
    *[(f"sparsify --last-cycle {v}", SPARSIFY + ["--last-cycle", v]) for v in ("1", "0", "nan", "x")],
    ("sparsify --last-cycle on gmp", SPARSIFY + ["--schedule", "gmp", "--last-cycle", "0.6"]),
    ("sparsify --last-cycle with one cycle", SPARSIFY + ["--cycles", "1", "--last-cycle", "0.6"]),
    *[(f"profile --latency-batch-size {v}", PROFILE + ["--latency-batch-size", v]) for v in ("0", "1e9", "x")],
    *[(f"profile --threads {v}", PROFILE + ["--threads", v]) for v in ("0", "1e9")],
    *[(f"profile --held-out {v}", PROFILE[:3] + ["--held-out", v] + PROFILE[5:]) for v in ("-1", "1e9")],
    *[(f"profile --time-budget {v}", PROFILE[:5] + ["--time-budget", v] + PROFILE[7:]) for v in ("nan", "-1",
                                                                                               "1e308")],
    ("profile --runtime onnxruntime --dtype bfloat16", PROFILE + ["--runtime", "onnxruntime", "--dtype",
                                                                  "bfloat16"]),
    ("profile --runtime tensorrt", PROFILE + ["--runtime", "tensorrt"]),
    ("profile --input-shape 0,8,8", ["profile", "--model", "mlp", "--input-shape", "0,8,8"]),
    ("profile no model", ["profile", "--out", "{o}.json"]),
    *[(f"prune --latency-reduction {v}", PRUNE[:7] + ["--latency-reduction", v] + PRUNE[9:])
      for v in ("0", "1", "nan", "-0.5", "0.9999")],
    *[(f"prune --target-latency-ms {v}", PRUNE[:7] + ["--target-latency-ms", v] + PRUNE[9:])
      for v in ("0", "-1", "nan", "inf", "1e-9")],
    ("prune --latency-reduction and --flops-reduction", PRUNE + ["--latency-reduction", "0.3"]),
    *[(f"prune --latency-tolerance {v}", LATENCY_PRUNE + ["--latency-tolerance", v]) for v in ("0", "2", "nan")],
    *[(f"prune --latency-rounds {v}", LATENCY_PRUNE + ["--latency-rounds", v]) for v in ("0", "1e9")],
    ("prune --latency-batch-size 0", LATENCY_PRUNE + ["--latency-batch-size", "0"]),
    ("prune --latency-profile missing", LATENCY_PRUNE + ["--latency-profile", "{d}/nope.json"]),
    ("prune --latency flags without a latency target", PRUNE + ["--latency-batch-size", "4"]),
    ("autoprune --target-latency-ms 1e-9", AUTOPRUNE[:5] + ["--target-latency-ms", "1e-9"] + AUTOPRUNE[7:]),
    *[(f"autoprune --beta {v}", AUTOPRUNE + ["--beta", v]) for v in ("1e308", "inf", "-1")],
    *[(f"autoprune --gamma {v}", AUTOPRUNE + ["--gamma", v]) for v in ("1e308", "nan")],
    *[(f"autoprune --flops-reduction {v}", AUTOPRUNE[:5] + ["--flops-reduction", v] + AUTOPRUNE[7:])
      for v in ("0", "1", "nan", "-0.5")],
    ("autoprune --batches 1e12", AUTOPRUNE + ["--batches", "1e12"]),
    ("autoprune --finetune-epochs 1e18", AUTOPRUNE + ["--finetune-epochs", "1e18"]),
    ("autoprune --finetune-lr 1e308", AUTOPRUNE + ["--finetune-lr", "1e308"]),
    ("autoprune --tolerance 2", AUTOPRUNE + ["--tolerance", "2"]),
    *[(f"prune --flops-reduction {v}", PRUNE[:7] + ["--flops-reduction", v] + PRUNE[9:]) for v in
      ("1", "0.999", "nan")],
    ("prune --min-channels 1e12", PRUNE + ["--min-channels", "1e12"]),
    ("prune --round-to 0", PRUNE + ["--round-to", "0"]),
    ("prune --criterion taylor --calib-batches 1e12", PRUNE[:5] + ["--criterion", "taylor"] + PRUNE[7:]
     + ["--calib-batches", "1e12"]),
    ("finetune --lr 1e308", FINETUNE + ["--lr", "1e308"]),
    ("finetune --epochs 1e18", FINETUNE[:5] + ["--epochs", "1e18"] + FINETUNE[7:]),
    ("report --repeats 1e9", ["report", "{c}", "--repeats", "1e9"]),
    ("report --threads 1e9", ["report", "{c}", "--threads", "1e9"]),
    ("report --names mismatch", ["report", "{c}", "--names", "a", "b"]),
    ("report missing dir", ["report", "{d}/nope"]),
    ("export --opset 999", CHECKPOINT_COMMANDS["export"] + ["--opset", "999"]),
    ("export --opset 0", CHECKPOINT_COMMANDS["export"] + ["--opset", "0"]),
    ("info --input-shape 0,1", ["info", "--model", "mlp", "--input-shape", "0,1"]),
    ("info --input-shape huge", ["info", "--model", "mlp", "--input-shape", "3,100000,100000"]),
    ("info --input-shape 1,2,3,4,5", ["info", "--model", "mlp", "--input-shape", "1,2,3,4,5"]),
    ("info --num-classes 1e12", ["info", "--model", "mlp", "--input-shape", "1,8,8", "--num-classes", "1e12"]),
    ("info --model unknown", ["info", "--model", "nope", "--input-shape", "1,8,8"]),
    ("explain --model wrong shape", ["explain", "--model", "mlp", "--input-shape", "3,5,7", "--data", "digits"]),
    ("info --checkpoint missing", ["info", "--checkpoint", "{d}/missing"]),
    ("info --checkpoint is file", ["info", "--checkpoint", "{d}/c/model.json"]),
    ("info --checkpoint empty dir", ["info", "--checkpoint", "{d}/empty"]),
]

OUTPUT_CASES: list[tuple[str, list[str], Callable[[Path], None]]] = [
    ("report --out existing file", ["report", "{c}", "--no-latency", "--out", "{d}/table.md"],
     write("table.md", "mine")),
    ("report --out checkpoint model.json", ["report", "{c}", "--no-latency", "--out", "{c}/model.json"],
     lambda d: None),
    ("report --out checkpoint model.json --overwrite", ["report", "{c}", "--no-latency", "--out",
                                                        "{c}/model.json", "--overwrite"], lambda d: None),
    ("report --out a directory --overwrite", ["report", "{c}", "--no-latency", "--out", "{d}/empty",
                                              "--overwrite"], lambda d: None),
    ("finetune --out parent --overwrite", FINETUNE[:-3] + ["--out", "{d}", "--overwrite", "--quiet"],
     lambda d: None),
    ("finetune --out = --checkpoint --overwrite", FINETUNE[:-3] + ["--out", "{c}", "--overwrite", "--quiet"],
     lambda d: None),
    ("prune --out inside checkpoint", PRUNE[:-3] + ["--out", "{c}/pruned", "--quiet"], lambda d: None),
    ("export --out inside checkpoint", CHECKPOINT_COMMANDS["export"][:-1] + ["{c}/m.pt"], lambda d: None),
    ("export --out existing dir --overwrite", CHECKPOINT_COMMANDS["export"][:-1] + ["{d}/empty", "--overwrite"],
     lambda d: None),
    ("export --out existing file", CHECKPOINT_COMMANDS["export"][:-1] + ["{d}/table.md"],
     write("table.md", "mine")),
    ("train --out existing checkpoint", TRAIN[:-1] + ["{c}"], lambda d: None),
    ("train --out non-checkpoint dir --overwrite", TRAIN[:-1] + ["{d}/mine", "--overwrite"],
     write("mine/thesis.tex", "years")),
    ("train --out a file --overwrite", TRAIN[:-1] + ["{d}/table.md", "--overwrite"], write("table.md", "mine")),
    ("train --out under a file", TRAIN[:-1] + ["{d}/table.md/sub"], write("table.md", "mine")),
    ("train --out inside --data-dir", ["train", "--model", "mlp", "--data", "fashion-mnist", "--data-dir",
                                       "{d}/data", "--out", "{d}/data/out"], idx_dir("incomplete")),
    ("train --save-state inside --out", TRAIN + ["--save-state", "{o}/state.pt"], lambda d: None),
    ("train --save-state existing", TRAIN + ["--save-state", "{d}/table.md"], write("table.md", "mine")),
    ("finetune --save-state inside checkpoint", FINETUNE + ["--save-state", "{c}/state.pt"], lambda d: None),
    ("finetune --save-state = checkpoint model.json", FINETUNE + ["--save-state", "{c}/model.json",
                                                                  "--overwrite"], lambda d: None),
    ("sparsify --out = --checkpoint", CHECKPOINT_COMMANDS["sparsify"][:-3] + ["--out", "{c}", "--overwrite"],
     lambda d: None),
    ("autoprune --out contains checkpoint", AUTOPRUNE[:-3] + ["--out", "{d}", "--overwrite"], lambda d: None),
    ("profile --out existing file", PROFILE[:-1] + ["{d}/table.md"], write("table.md", "mine")),
    ("profile --out checkpoint model.json --overwrite", PROFILE[:-1] + ["{c}/model.json", "--overwrite"],
     lambda d: None),
    ("profile --out a directory --overwrite", PROFILE[:-1] + ["{d}/empty", "--overwrite"], lambda d: None),
]

PROFILE_FILES: dict[str, str] = {
    "garbage": "{garbage", "list": "[]", "empty object": "{}", "NaN fields": '{"version": 1, "dense_ms": NaN}',
    "future version": '{"version": 99}', "huge": "[" * 200000 + "]" * 200000,
}
PROFILE_FILE_CASES: list[tuple[str, list[str], Callable[[Path], None]]] = [
    *[(f"prune --latency-profile {k}", LATENCY_PRUNE + ["--latency-profile", "{d}/lat.json"], write("lat.json", v))
      for k, v in PROFILE_FILES.items()],
    ("autoprune --latency-profile garbage", AUTOPRUNE[:5] + ["--latency-reduction", "0.3"] + AUTOPRUNE[7:]
     + ["--latency-profile", "{d}/lat.json"], write("lat.json", "{garbage")),
]

STATE_KINDS = ("empty", "garbage", "list", "no config", "wrong format", "future version", "bad types",
               "pickle with code")
DATA_CASES: list[tuple[str, list[str], Callable[[Path], None]]] = [
    *[(f"fashion-mnist --data-dir {k}", ["train", "--model", "mlp", "--data", "fashion-mnist", "--data-dir",
                                         "{d}/data", "--out", "{o}", "--quiet"], idx_dir(k))
      for k in ("empty", "incomplete", "garbage", "truncated gzip", "huge dims")],
    ("cifar10 pickle with code", ["train", "--model", "mlp", "--data", "cifar10", "--data-dir", "{d}/data",
                                  "--out", "{o}", "--quiet"], cifar_pickle),
    ("cifar10 --data-dir empty", ["train", "--model", "mlp", "--data", "cifar10", "--data-dir", "{d}/data",
                                  "--out", "{o}", "--quiet"], idx_dir("empty")),
    ("digits --data-dir (ignored before)", TRAIN + ["--data-dir", "{d}/data"], idx_dir("empty")),
    ("mnist5k --data-dir", ["train", "--model", "mlp", "--data", "mnist5k", "--data-dir", "{d}/data", "--out",
                            "{o}"], idx_dir("empty")),
]

SUBPROCESS_CASES: list[tuple[str, list[str], Callable[[Path], None]]] = [
    ("cwd torch_pruning/ with a plan", ["info", "--checkpoint", "c"], poisoned_package("torch_pruning", True)),
    ("cwd tqdm/ during finetune", ["finetune", "--checkpoint", "c", "--data", "digits", "--epochs", "1",
                                   "--out", "o", "--lr", "1e6"], poisoned_package("tqdm", False)),
    ("module inside checkpoint (python -m)", ["info", "--checkpoint", "c"], local_module),
    ("torch.hub:load (python -m)", ["info", "--checkpoint", "c"], hub_load),
]


def build_matrix() -> list[Case]:
    cases: list[Case] = []
    for cname, craft in {**CRAFTED_CHECKPOINTS, **HOSTILE_CHECKPOINTS}.items():
        group = "hostile checkpoint" if cname in HOSTILE_CHECKPOINTS else "broken checkpoint"
        commands = CHECKPOINT_COMMANDS if group == "hostile checkpoint" or cname.startswith(("weights", "name")) \
            else {k: CHECKPOINT_COMMANDS[k] for k in ("info", "report", "export", "finetune")}
        for cmd, argv in commands.items():
            cases.append(Case(f"{cmd}: {cname}", argv, craft, group=group))
    for name, argv in FLAG_CASES:
        cases.append(Case(name, argv, group="flag values"))
    for name, argv, craft in OUTPUT_CASES:
        cases.append(Case(name, argv, craft, group="outputs vs inputs"))
    for kind in STATE_KINDS:
        for cmd, argv in (("train", TRAIN), ("sparsify", SPARSIFY), ("finetune", FINETUNE)):
            cases.append(Case(f"{cmd} --resume {kind}", argv + ["--resume", "{d}/state.pt", "--save-state",
                                                                "{d}/state.pt"], state_file(kind),
                              group="state files"))
    for name, argv, craft in DATA_CASES:
        cases.append(Case(name, argv, craft, group="data"))
    for name, argv, craft in PROFILE_FILE_CASES:
        cases.append(Case(name, argv, craft, group="latency profiles"))
    for name, argv, craft in SUBPROCESS_CASES:
        cases.append(Case(name, argv, craft, subprocess=True, group="import path"))
    return cases


# ----------------------------------------------------------------------------------------------- running
def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and not p.is_symlink():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "<dir>"
    return out


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def run_in_process(argv: list[str]) -> tuple[int | None, str, bool]:
    """(exit code, stderr, escaped exception?)"""
    from secateurs.cli import main

    err, out = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    escaped = False
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except _Timeout:
                code, escaped = None, False
                err.write("TIMEOUT\n")
            except BaseException:  # noqa: BLE001  the thing we are counting
                import traceback

                traceback.print_exc(file=err)
                code, escaped = 1, True
    finally:
        signal.alarm(0)
        torch.set_num_threads(threads)
    return code, err.getvalue(), escaped


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int | None, str, bool]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    try:
        r = subprocess.run([sys.executable, "-m", "secateurs.cli", *argv], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=CASE_TIMEOUT_S * 2)
    except subprocess.TimeoutExpired:
        return None, "TIMEOUT", False
    return r.returncode, r.stderr, False


def run_case(case: Case, base: Path) -> Outcome:
    d = Path(tempfile.mkdtemp(dir=base, prefix="case-"))
    good_checkpoint(d / "c")
    (d / "empty").mkdir()
    case.craft(d)
    argv = [a.format(d=d, c=d / "c", o=d / "out") if not case.subprocess else a for a in case.argv]
    before = snapshot(d)
    cwd = os.getcwd()
    start = time.perf_counter()
    try:
        if case.subprocess:
            code, stderr, escaped = run_subprocess(argv, d)
        else:
            os.chdir(d)
            code, stderr, escaped = run_in_process(argv)
    finally:
        os.chdir(cwd)
    seconds = time.perf_counter() - start
    after = snapshot(d)
    executed = (d / "PWNED").exists() or any("__pycache__" in k and k not in before for k in after)
    damaged = sorted([k for k in before if after.get(k) != before[k]] +
                     [k for k in after if k not in before and k != "PWNED"])
    if code is None:
        verdict = "hang"
    elif escaped or "Traceback" in stderr:
        verdict = "traceback"
    elif code == 0:
        verdict = "exit-0 surprise"
    elif code == 2 and stderr.strip().startswith("secateurs") and ": error: " in stderr.strip().splitlines()[0]:
        verdict = "clear error"  # the first line names the problem (data errors add lines listing fixes)
    else:
        verdict = f"exit {code}"
    return Outcome(case.name, case.group, code, verdict, stderr.strip()[-2000:], executed, damaged, seconds)


def versions() -> dict:
    import secateurs

    return {"secateurs": secateurs.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads()}


def markdown(results: list[Outcome], meta: dict) -> str:
    groups = sorted({r.group for r in results})
    cols = ["cases", "clear errors", "tracebacks", "exit-0 surprises", "code executed",
            "files changed that should not be", "other"]

    def row(rs):
        return [len(rs), sum(r.verdict == "clear error" for r in rs), sum(r.verdict == "traceback" for r in rs),
                sum(r.verdict == "exit-0 surprise" for r in rs), sum(r.code_executed for r in rs),
                sum(bool(r.damaged) for r in rs),
                sum(r.verdict not in ("clear error", "traceback", "exit-0 surprise") for r in rs)]

    lines = [f"# CLI fuzz matrix ({meta['date']})", "",
             f"`{meta['command']}` — {meta['seconds']:.0f} s, load average {meta['loadavg_before']} before / "
             f"{meta['loadavg_after']} after; versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
             "", "| group | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(map(str, row([r for r in results if r.group == g]))) + " |")
    lines.append("| **total** | " + " | ".join(f"**{v}**" for v in row(results)) + " |")
    bad = [r for r in results if r.verdict != "clear error" or r.code_executed or r.damaged]
    lines += ["", "A clear error is exit status 2 with an error line and no traceback. Code executed: a hostile "
              "file's payload wrote its marker (or a module from the case directory was imported). Files changed: "
              "any input file changed or removed, or any new file left behind.", ""]
    if bad:
        lines += ["## Cases that are not clear errors", "", "| case | verdict | code executed | changed | stderr |",
                  "|---|---|---|---|---|"]
        for r in bad:
            last = (r.stderr.splitlines() or [""])[-1].replace("|", "\\|")[:160]
            lines.append(f"| {r.name} | {r.verdict} | {r.code_executed} | {', '.join(r.damaged)[:80]} | {last} |")
    return "\n".join(lines) + "\n"


def main_(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz_cli"),
                   help="write OUT.md and OUT.json (default benchmarks/results/fuzz_cli)")
    p.add_argument("-k", default=None, help="only cases whose name contains this")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("SECATEURS_OFFLINE", "1")  # never download during the fuzz run
    cases = [c for c in build_matrix() if args.k is None or args.k in c.name]
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="secateurs-fuzz-") as base:
        for i, case in enumerate(cases):
            r = run_case(case, Path(base))
            results.append(r)
            flag = "" if r.verdict == "clear error" and not r.code_executed and not r.damaged else "  <-- " + \
                f"{r.verdict} executed={r.code_executed} changed={r.damaged[:3]}"
            print(f"[{i + 1}/{len(cases)}] {r.seconds:5.1f}s {r.name}{flag}", file=sys.stderr, flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/fuzz_cli.py" + (f" -k {args.k!r}"
                                                                                      if args.k else ""),
            "seconds": time.perf_counter() - start, "loadavg_before": load_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "versions": versions(), "cases": len(results)}
    table = markdown(results, meta)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps({
        **meta, "results": [r.__dict__ for r in results]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
