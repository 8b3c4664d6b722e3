"""Cyclical pruning vs GMP under the efficacy protocol of the project's efficacy issue, through the library.

Protocol (fixed by the issue): LeNet-300-100 (zoo ``mlp``) on full Fashion-MNIST; dense 12 epochs (SGD momentum
0.9, lr 0.05 cosine, wd 5e-4, batch 128, no augmentation, no label smoothing, no warm-up), trained once with seed
0; then 12 epochs of sparsification from the dense weights (lr 0.02 cosine, same wd, per-layer ranking, mask update
every 50 steps, no BatchNorm re-estimation — the MLP has none). GMP is ``Cyclical(cycles=1)``; "cyclical" is the
library's default cyclical schedule. Results are paired (same seed) differences, mean ± std over seeds.

Two studies:

* ``--study factors``: at one or two sparsities, the candidate causes of the gap to the independent reference
  script (``shared/reference/cyclical_reference.py``, run as a subprocess on the same seeds and reported beside),
  each switched on its own: Nesterov momentum, the 5,000-image validation hold-out, masks frozen in the last hold,
  the mandatory mask update at cycle and hold starts.
* ``--study grid``: candidate cyclical defaults (cycles, restart sparsity, ramp) under the protocol (60k, library
  training defaults), GMP run once per seed and shared.
* ``--study grid-low``: the same at low sparsity (0.9, 0.95), where the default ties GMP: learning-rate restarts per
  cycle, ramp fraction, restart sparsity.
* ``--study grid-last``: a longer last cycle (the one whose mask is kept), at low and high sparsity.
* ``--study grid-regrow``: how a weight pruned in one cycle comes back at the next restart (at 0, the default; at
  its pruned value, ``variant="shadow"``; trained while pruned, ``variant="ste"``) and a partial restart to 0.8.
* ``--study protocol``: the protocol at every sparsity and seed with the configuration given by ``--config``
  (``distill``: the sparse phase trains with :class:`secateurs.distill.DistillationLoss` from the dense model,
  library defaults A = 0.5, T = 4, for GMP and cyclical alike).

    python benchmarks/cyclical_protocol.py --study factors --sparsities 0.99 --seeds 0 1 2
    python benchmarks/cyclical_protocol.py --study protocol --sparsities 0.9 0.95 0.98 0.99 0.995 --seeds 0 1 2 3 4
    python benchmarks/cyclical_protocol.py --study protocol --setup lenet5 ...   # the same defaults on LeNet-5
    python benchmarks/cyclical_protocol.py --study protocol --setup cnn1d ...    # and on cnn1d / MNIST-1D
    python benchmarks/cyclical_protocol.py --merge STEM STEM --out STEM          # more seeds, one paired table

``--setup`` picks the model, data and budgets (``RECIPES``): ``mlp`` is the issue's protocol, ``lenet5`` the same
recipe on LeNet-5, ``cnn1d`` a recipe of ours for MNIST-1D (stated in ``RECIPES`` and in every results file).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from _common import RESULTS, environment, mean_ci95, mean_std, write_results
from secateurs.data import get_dataset
from secateurs.distill import DistillationLoss, DistillConfig
from secateurs.models import create_model
from secateurs.schedules import Cyclical
from secateurs.train import TrainConfig, fit
from secateurs.unstructured import CyclicalSparsifier, SparsifierCallback

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cyclical_reference.py"


@dataclass(frozen=True)
class Recipe:
    """Model, data and budgets of one protocol set-up (``--setup``)."""

    model: str
    data: str
    dense: dict
    sparse: dict
    update_every: int
    text: str


RECIPES = {
    "mlp": Recipe("mlp", "fashion-mnist", dict(epochs=12, lr=0.05), dict(epochs=12, lr=0.02), 50,
                  "LeNet-300-100 on Fashion-MNIST; dense 12 epochs lr 0.05 (seed 0), then 12 epochs of pruning at "
                  "lr 0.02, cosine, wd 5e-4, batch 128, no augmentation, per-layer ranking, mask update every 50 "
                  "steps."),
    "lenet5": Recipe("lenet5", "fashion-mnist", dict(epochs=12, lr=0.05), dict(epochs=12, lr=0.02), 50,
                     "LeNet-5 on Fashion-MNIST, the same recipe as LeNet-300-100: dense 12 epochs lr 0.05 (seed 0), "
                     "then 12 epochs of pruning at lr 0.02, cosine, wd 5e-4, batch 128, no augmentation, per-layer "
                     "ranking, mask update every 50 steps, no BatchNorm re-estimation."),
    # mnist1d has 4,000 training sequences (32 steps of 128 an epoch): the budget is in steps what 12 Fashion-MNIST
    # epochs are not, so 40 + 40 epochs (1,280 steps of pruning) and a mask update every 20 steps (64 updates)
    "cnn1d": Recipe("cnn1d", "mnist1d", dict(epochs=40, lr=0.05), dict(epochs=40, lr=0.02), 20,
                    "cnn1d (3 conv + BN, 1 linear) on MNIST-1D (4,000 train / 1,000 test); dense 40 epochs lr 0.05 "
                    "(seed 0), then 40 epochs of pruning at lr 0.02, cosine, wd 5e-4, batch 128, no augmentation, "
                    "per-layer ranking, mask update every 20 steps (1,280 steps in all), no BatchNorm "
                    "re-estimation."),
}
RECIPE = RECIPES["mlp"]  # set by main() from --setup


@dataclass(frozen=True)
class Setting:
    """One way of running the protocol. ``None`` fields take the library's defaults."""

    name: str
    nesterov: bool | None = None
    val_size: int | None = 0            # the protocol trains on all 60,000 images
    freeze_final: bool = True
    boundary_updates: bool = True       # mandatory mask updates at cycle / hold starts
    cycles: int | None = None
    restart_sparsity: float | None = None
    ramp: float | None = None
    distill: bool = False               # train the sparse student with DistillationLoss from the dense model
    lr_restart: bool = False            # restart the cosine learning rate at every cycle start (cyclical only)
    last_cycle: float | None = None     # fraction of the steps the last cycle gets (None: the library default)
    variant: str = "project"            # weight handling (cyclical only): how a pruned weight regrows at a restart

    def train_config(self, seed: int, **kw) -> TrainConfig:
        extra = {} if self.nesterov is None else {"nesterov": self.nesterov}
        return TrainConfig(batch_size=128, weight_decay=5e-4, augment=False, warmup_epochs=0.0,
                           label_smoothing=0.0, seed=seed, evaluate_every_epoch=False, **extra, **kw)

    def schedule(self, sparsity: float, total_steps: int, cyclical: bool) -> Cyclical:
        """GMP is ``Cyclical(cycles=1)`` with the library's defaults; the cyclical fields apply to cyclical only."""
        if not cyclical:
            return Cyclical(sparsity, total_steps, cycles=1)
        kw = {k: v for k, v in (("cycles", self.cycles), ("restart_sparsity", self.restart_sparsity),
                                ("ramp", self.ramp), ("last_cycle", self.last_cycle))
              if v is not None}
        return Cyclical(sparsity, total_steps, **kw)


class _NoBoundaryUpdates(CyclicalSparsifier):
    """Measurement only: masks recomputed every ``update_every`` steps and at the freeze, not at cycle starts."""

    def is_update_step(self, step: int) -> bool:
        freeze = self.schedule.freeze_step
        if self.freeze_final and step > freeze:
            return False
        return step % self.update_every == 0 or step == freeze


_DENSE_CACHE: dict = {}


def dense_model(setting: Setting, data):
    key = (RECIPE.model, setting.nesterov, setting.val_size)
    if key not in _DENSE_CACHE:
        torch.manual_seed(0)  # the initialisation must not depend on what ran before in this process
        model = create_model(RECIPE.model, num_classes=data.num_classes, in_channels=data.input_shape[0])
        res = fit(model, data, setting.train_config(0, **RECIPE.dense), progress=False)
        _DENSE_CACHE[key] = ({k: v.clone() for k, v in model.state_dict().items()}, res.accuracy)
    return _DENSE_CACHE[key]


def sparse_run(setting: Setting, data, sparsity: float, seed: int, cyclical: bool) -> dict:
    state, dense_acc = dense_model(setting, data)
    model = create_model(RECIPE.model, num_classes=data.num_classes, in_channels=data.input_shape[0])
    model.load_state_dict(state)
    cls = CyclicalSparsifier if setting.boundary_updates else _NoBoundaryUpdates

    def factory(m, total_steps):
        return cls(m, setting.schedule(sparsity, total_steps, cyclical), update_every=RECIPE.update_every, scope="layer",
                   freeze_final=setting.freeze_final, variant=setting.variant if cyclical else "project")

    cb = SparsifierCallback(factory, bn_batches=0, lr_restart=setting.lr_restart and cyclical)
    criterion = None
    if setting.distill:
        teacher = create_model(RECIPE.model, num_classes=data.num_classes, in_channels=data.input_shape[0])
        teacher.load_state_dict(state)
        criterion = DistillationLoss(teacher, DistillConfig())
    t0 = time.perf_counter()
    res = fit(model, data, setting.train_config(seed, **RECIPE.sparse), callbacks=[cb], progress=False, criterion=criterion)
    return {"setting": setting.name, "method": "cyclical" if cyclical else "GMP", "sparsity": sparsity,
            "seed": seed, "accuracy": res.accuracy, "realised": cb.summary["sparsity"],
            "recovered": cb.summary["recovered_fraction"], "dense_accuracy": dense_acc,
            "schedule": cb.sparsifier.schedule.to_dict(), "sparsifier": cb.sparsifier.config(),
            "seconds": time.perf_counter() - t0}


def reference_runs(sparsities, seeds, data_dir: str) -> list[dict]:
    """The shared reference script, as shipped, on the same seeds (None if it is not beside the repo)."""
    if not REFERENCE.is_file():
        return []
    cmd = [sys.executable, str(REFERENCE), "--sparsities", *map(str, sparsities), "--seeds", *map(str, seeds),
           "--data", data_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    rows = []
    for line in out.splitlines():
        r = json.loads(line)
        if r["method"] != "dense":
            rows.append({"setting": "reference script", "method": "GMP" if r["method"] == "GMP" else "cyclical",
                         "sparsity": r["sparsity"], "seed": r["seed"], "accuracy": r["acc"],
                         "realised": r["realised"], "recovered": r["recovered"]})
    return rows


FACTORS = [
    Setting("secateurs as in the issue (Nesterov, 5k hold-out)", nesterov=True, val_size=None),
    Setting("Nesterov off", nesterov=False, val_size=None),
    Setting("no hold-out (60k)", nesterov=True, val_size=0),
    Setting("Nesterov off + no hold-out", nesterov=False, val_size=0),
    Setting("Nesterov off + no hold-out + no freeze", nesterov=False, val_size=0, freeze_final=False),
    Setting("Nesterov off + no hold-out + no boundary updates", nesterov=False, val_size=0, boundary_updates=False),
]
GRID = [
    Setting("C=3, restart 0 (first-round default)", cycles=3, restart_sparsity=0.0),
    Setting("C=2, restart 0", cycles=2, restart_sparsity=0.0),
    Setting("C=4, restart 0", cycles=4, restart_sparsity=0.0),
    Setting("C=3, restart 0.5", cycles=3, restart_sparsity=0.5),
    Setting("C=3, ramp 0.5", cycles=3, restart_sparsity=0.0, ramp=0.5),
]
# the low-sparsity question: at 0.9 the default C=2 ties GMP (-0.03 +- 0.14 over 5 seeds); what could lift it
# (the default itself is the protocol study's row: same code, same seeds; its GMP column must match this one's)
GRID_LOW = [
    Setting("C=2, lr restart per cycle", lr_restart=True),
    Setting("C=2, ramp 0.5", ramp=0.5),
    Setting("C=2, ramp 0.9", ramp=0.9),
    Setting("C=2, restart 0.5", restart_sparsity=0.5),
]
# the last cycle is the one whose mask is kept: with equal cycles it gets half of GMP's ramp and recovery; a longer
# last cycle (the earlier ones sharing the rest) is the cycle-length candidate
GRID_LAST = [
    Setting("C=2, last cycle 2/3", last_cycle=2 / 3),
    Setting("C=2, last cycle 3/4", last_cycle=0.75),
    Setting("C=3, last cycle 1/2", cycles=3, last_cycle=0.5),
]
# regrowth initialisation: with the default projection a weight pruned in one cycle comes back at 0 at the next
# restart; "shadow" brings it back at the value it had when pruned (shrunk by weight decay), "ste" keeps training it
# while pruned (straight-through gradient), so it comes back at what it would have learnt
GRID_REGROW = [
    Setting("C=2, regrow at the pruned value (shadow)", variant="shadow"),
    Setting("C=2, pruned weights keep learning (ste)", variant="ste"),
    Setting("C=2, restart sparsity 0.8", restart_sparsity=0.8),
]
CONFIGS = {
    "defaults": Setting("library defaults (all training data)"),
    "reference-like": Setting("Nesterov off, 60k", nesterov=False),
    "distill": Setting("library defaults + distillation from the dense model", distill=True),
}


def table(rows: list[dict], sparsities, settings: list[str]) -> str:
    def acc(setting, method, s):
        return {r["seed"]: r["accuracy"] for r in rows
                if r["setting"] == setting and r["method"] == method and r["sparsity"] == s}

    head = ("| setting | sparsity | GMP | cyclical | cyclical − GMP (paired) | 95 % CI of the paired mean | "
            "cyclical ahead / tied / behind | seeds |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name in settings:
        for s in sorted(sparsities):  # run order may put the decisive sparsities first
            g, c = acc(name, "GMP", s), acc(name, "cyclical", s)
            if not g or not c:
                continue
            common = sorted(set(g) & set(c))
            gm, gs = mean_std([g[k] for k in common])
            cm, cs = mean_std([c[k] for k in common])
            diffs = [c[k] - g[k] for k in common]
            dm, ds = mean_std(diffs)
            _, lo, hi = mean_ci95(diffs)
            ahead, behind = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
            lines.append(f"| {name} | {s:g} | {100 * gm:.2f} ± {100 * gs:.2f} | {100 * cm:.2f} ± {100 * cs:.2f} | "
                         f"{100 * dm:+.2f} ± {100 * ds:.2f} | [{100 * lo:+.2f}, {100 * hi:+.2f}] | "
                         f"{ahead} / {len(diffs) - ahead - behind} / {behind} | {len(common)} |")
    return "\n".join(lines)


def merge(stems: list[str], out: str) -> str:
    """One table from several protocol results files of the same study, set-up and dense model (e.g. more seeds
    run later, paired by seed as before); nothing is re-run. Refused when the set-ups, the dense accuracies (the
    check that tells two machines' floating-point paths apart: the CPU's name often does not), the CPUs or the
    torch / secateurs versions differ, when two files hold the same (setting, method, sparsity, seed), or when
    ``out`` is one of the inputs."""
    if out in stems:
        raise SystemExit(f"--merge: --out {out!r} is one of the inputs; writing it would replace that file")
    parts = [json.loads((RESULTS / f"{stem}.json").read_text()) for stem in stems]
    for key in ("study", "setup", "recipe", "dense_accuracy"):
        if any(part[key] != parts[0][key] for part in parts):
            raise SystemExit(f"--merge: the files differ in {key}; only runs of one set-up and dense model pair")
    for key in ("cpu", "torch", "secateurs"):
        if len({part["environment"].get(key) for part in parts}) > 1:
            raise SystemExit(f"--merge: the files differ in the environment's {key}; their runs do not pair")
    rows = [r for part in parts for r in part["rows"]]
    keys = [(r["setting"], r["method"], r["sparsity"], r["seed"]) for r in rows]
    if len(set(keys)) < len(keys):
        raise SystemExit("--merge: two files hold the same run (setting, method, sparsity, seed)")
    recipe = RECIPES[parts[0]["setup"]]
    sparsities = sorted({r["sparsity"] for r in rows})
    names = list(dict.fromkeys(r["setting"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    env = parts[0]["environment"]
    md = "\n".join([
        f"# Cyclical vs GMP, efficacy protocol ({parts[0]['study']}, merged)", "",
        recipe.text + " Test accuracy (%), mean ± std over seeds; the difference is paired by seed.", "",
        f"Merged from {', '.join(f'`{s}.md`' for s in stems)} (the same dense model and machine type; nothing "
        "re-run).", "",
        *([f"**Partial**: {', '.join(s for s, p in zip(stems, parts) if p['partial'])} held the rows of a run "
           "cut short."] if any(p["partial"] for p in parts) else []),
        table(rows, sparsities, names), "",
        "Dense accuracy per setting: " + ", ".join(f"{k}: {100 * v:.2f}" for k, v in parts[0]["dense_accuracy"].items()),
        "", f"Seeds {seeds}; torch {env['torch']}; {env['cpu']}; per file: "
        + "; ".join(f"`{s}` seeds {p['seeds']}, {p['environment']['torch_threads']} thread(s), load at the start "
                    f"{p['environment']['loadavg_start'][0]:.2f}" for s, p in zip(stems, parts)) + ".", ""])
    write_results(out, {"environment": env, "study": parts[0]["study"], "setup": parts[0]["setup"],
                        "recipe": parts[0]["recipe"], "sparsities": sparsities, "seeds": seeds,
                        "dense_accuracy": parts[0]["dense_accuracy"], "partial": any(p["partial"] for p in parts),
                        "merged_from": stems, "rows": rows}, md)
    return md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if any(a == "--merge" or a.startswith("--merge=") for a in sys.argv[1:]):  # its own parser: no --study
        m = argparse.ArgumentParser(prog="cyclical_protocol.py --merge")
        m.add_argument("--merge", nargs="+", metavar="STEM", required=True, help="results files to combine")
        m.add_argument("--out", required=True, help="stem of the merged results file")
        margs = m.parse_args()
        print(merge(margs.merge, margs.out))
        return
    p.add_argument("--study", choices=("factors", "grid", "grid-low", "grid-last", "grid-regrow", "protocol"), required=True)
    p.add_argument("--setup", choices=sorted(RECIPES), default="mlp", help="model, data and budgets (see RECIPES)")
    p.add_argument("--config", choices=sorted(CONFIGS), default="defaults", help="protocol study: the setting")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.99])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-reference", action="store_true", help="skip the reference script's runs")
    p.add_argument("--data-dir", default=None, help="default: /usr/share/datasets/fashion-mnist for Fashion-MNIST")
    p.add_argument("--tag", default="", help="suffix of the results file name")
    args = p.parse_args()
    global RECIPE
    RECIPE = RECIPES[args.setup]
    if args.data_dir is None and RECIPE.data == "fashion-mnist":
        args.data_dir = "/usr/share/datasets/fashion-mnist"
    if args.study == "factors" and args.setup != "mlp":
        p.error("--study factors compares with the reference script, which runs LeNet-300-100 only: --setup mlp")
    torch.set_num_threads(args.threads)
    settings = {"factors": FACTORS, "grid": GRID, "grid-low": GRID_LOW, "grid-last": GRID_LAST,
                "grid-regrow": GRID_REGROW}.get(args.study) or [CONFIGS[args.config]]
    stem = (f"cyclical_{args.study}" + ("" if args.setup == "mlp" else f"_{args.setup}")
            + (f"_{args.tag}" if args.tag else ""))
    env = environment(args.threads)
    rows: list[dict] = []
    t0 = time.perf_counter()
    datasets: dict = {}
    gmp_done: dict = {}
    for setting in settings:
        if setting.val_size not in datasets:
            datasets[setting.val_size] = get_dataset(RECIPE.data, data_dir=args.data_dir,
                                                     val_size=setting.val_size, download=False)
        data = datasets[setting.val_size]
        for s in args.sparsities:
            for seed in args.seeds:
                for cyclical in (False, True):
                    # GMP ignores the cyclical fields: run it once per training set-up and reuse it
                    key = (setting.nesterov, setting.val_size, setting.freeze_final, setting.boundary_updates,
                           setting.distill, s, seed)
                    if not cyclical and key in gmp_done:
                        rows.append({**gmp_done[key], "setting": setting.name})
                        continue
                    r = sparse_run(setting, data, s, seed, cyclical)
                    if not cyclical:
                        gmp_done[key] = r
                    r["loadavg"] = os.getloadavg()
                    rows.append(r)
                    print(json.dumps({k: r[k] for k in ("setting", "method", "sparsity", "seed", "accuracy",
                                                        "recovered", "seconds")}), flush=True)
                    save(args, stem, settings, datasets, rows, env, t0, partial=True)
    if args.study == "factors" and not args.no_reference:
        ref = reference_runs(args.sparsities, args.seeds, args.data_dir)
        for r in ref:
            r["loadavg"] = os.getloadavg()
        rows += ref
    print(save(args, stem, settings, datasets, rows, env, t0))


def save(args, stem, settings, datasets, rows, env, t0, partial: bool = False) -> str:
    """Write the results file (also after every run, so a run cut short keeps what it measured); returns the
    markdown."""
    names = [s.name for s in settings] + (["reference script"] if any(r["setting"] == "reference script"
                                                                       for r in rows) else [])
    trained = {s.name: _DENSE_CACHE.get((RECIPE.model, s.nesterov, s.val_size)) for s in settings}
    dense = {name: v[1] for name, v in trained.items() if v is not None}  # only dense models trained so far
    md = "\n".join([
        f"# Cyclical vs GMP, efficacy protocol ({args.study})", "",
        RECIPE.text + " Test accuracy (%), mean ± std over seeds; the difference is paired by seed.", "",
        *(["**Partial**: the run was still going when this file was written; rows so far."] if partial else []),
        table(rows, args.sparsities, names), "",
        "Dense accuracy per setting: " + ", ".join(f"{k}: {100 * v:.2f}" for k, v in dense.items()), "",
        f"Seeds {args.seeds}; {args.threads} thread(s); load average at the end {os.getloadavg()}; "
        f"{time.perf_counter() - t0:.0f} s; torch {env['torch']}; {env['cpu']}.", ""])
    write_results(stem, {"environment": env, "study": args.study, "setup": args.setup,
                         "recipe": {"model": RECIPE.model, "data": RECIPE.data, "dense": RECIPE.dense,
                                    "sparse": RECIPE.sparse, "update_every": RECIPE.update_every},
                         "sparsities": args.sparsities, "seeds": args.seeds, "dense_accuracy": dense,
                         "partial": partial, "rows": rows}, md)
    return md


if __name__ == "__main__":
    main()
