"""How long building the channel graph and ``secateurs explain`` take (issue 10, item 5).

Measured, with the repeats interleaved (one run of every variant per round, so drifting background load hits all
of them alike) after one warm-up round:

* per model (zoo ResNet-56 at 3x32x32; a torchvision-style ResNet-50 at 3x224x224, ``_resnet50.py``): Torch-Pruning's
  ``DependencyGraph.build_dependency`` alone (the tracer we build on: the floor), ``build_channel_graph`` without
  and with its float64 verification;
* ``secateurs explain`` end to end (a fresh interpreter: imports, model build, trace, verification, table) on
  ResNet-56, next to ``python -c "import torch"`` (the import floor no change of ours can go below);
  with ``--baseline-src DIR`` (another checkout's ``src``) also that version's ``explain``, and
  ``build_channel_graph(verify=True)`` timed inside a fresh worker interpreter of each version (after a warm-up
  build), alternating between them, for before/after ratios.

On a shared machine compare the ratios, not absolute times; the load average before and after is recorded.

    python benchmarks/graph_speed.py [--repeats 3] [--threads 1] [--baseline-src /path/to/old/src]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import environment, write_results

SRC = Path(__file__).resolve().parent.parent / "src"
EXPLAIN = ["-m", "secateurs.cli", "explain", "--model", "resnet56", "--input-shape", "3,32,32"]


def models():
    from _resnet50 import resnet50
    from secateurs.models import create_model

    torch.manual_seed(0)
    return {
        "resnet56 (3x32x32)": (create_model("resnet56", num_classes=10).eval(), torch.randn(1, 3, 32, 32)),
        "resnet50 (3x224x224)": (resnet50().eval(), torch.randn(1, 3, 224, 224)),
    }


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def tp_build(model, x):
    import torch_pruning as tp

    tp.DependencyGraph().build_dependency(copy.deepcopy(model), x)


def run_python(args, src: Path, threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def worker() -> None:
    """Print the seconds of one ``build_channel_graph(verify=True)`` per model after a warm-up build (JSON)."""
    import json

    from secateurs.graph import build_channel_graph

    out = {}
    for name, (model, x) in models().items():
        build_channel_graph(model, x)
        out[name] = timed(lambda: build_channel_graph(model, x))
    print(json.dumps(out))


def worker_rounds(srcs: dict, repeats: int, threads: int) -> dict:
    import json

    times: dict = {k: {} for k in srcs}
    for _ in range(repeats):
        for k, src in srcs.items():
            env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(__file__).resolve().parent}",
                   "OMP_NUM_THREADS": str(threads)}
            res = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads)], env=env,
                                 check=True, capture_output=True, text=True)
            for model, t in json.loads(res.stdout.strip().splitlines()[-1]).items():
                times[k].setdefault(model, []).append(t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-src", type=Path, default=None, help="another checkout's src/ to compare with")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        return worker()
    from secateurs.graph import build_channel_graph

    load_before = os.getloadavg()
    rows, payload = [], {"graph": {}, "explain": {}}
    for name, (model, x) in models().items():
        variants = {
            "torch-pruning build_dependency": lambda: tp_build(model, x),
            "build_channel_graph(verify=False)": lambda: build_channel_graph(model, x, verify=False),
            "build_channel_graph(verify=True)": lambda: build_channel_graph(model, x),
        }
        times = {k: [] for k in variants}
        for r in range(args.repeats + 1):
            for k, fn in variants.items():
                t = timed(fn)
                if r:  # round 0 is the warm-up
                    times[k].append(t)
        payload["graph"][name] = times
        ref = statistics.median(times["torch-pruning build_dependency"])
        for k, ts in times.items():
            med = statistics.median(ts)
            rows.append(f"| {name} | {k} | {med:.3f} | {statistics.pstdev(ts):.3f} | {med / ref:.2f} |")

    e_variants = {"python -c 'import torch'": (["-c", "import torch"], SRC),
                  "secateurs explain resnet56 (this version)": (EXPLAIN, SRC)}
    if args.baseline_src is not None:
        e_variants["secateurs explain resnet56 (baseline)"] = (EXPLAIN, args.baseline_src.resolve())
    e_times = {k: [] for k in e_variants}
    for r in range(args.repeats + 1):
        for k, (cmd, src) in e_variants.items():
            t = run_python(cmd, src, args.threads)
            if r:
                e_times[k].append(t)
    payload["explain"] = e_times
    floor = statistics.median(e_times["python -c 'import torch'"])
    e_rows = [f"| {k} | {statistics.median(ts):.2f} | {statistics.pstdev(ts):.2f} | {statistics.median(ts) / floor:.2f} |"
              for k, ts in e_times.items()]
    w_rows = []
    if args.baseline_src is not None:
        w = worker_rounds({"this version": SRC, "baseline": args.baseline_src.resolve()}, args.repeats, args.threads)
        payload["build_before_after"] = w
        for model in w["this version"]:
            now, base = statistics.median(w["this version"][model]), statistics.median(w["baseline"][model])
            w_rows.append(f"| {model} | {base:.3f} | {now:.3f} | {now / base:.2f} |")
    load_after = os.getloadavg()
    payload.update(environment(args.threads), repeats=args.repeats, load_before=load_before, load_after=load_after,
                   baseline_src=str(args.baseline_src) if args.baseline_src else None, seed=0)
    md = "\n".join([
        "# Channel graph build and `secateurs explain` speed",
        "",
        f"torch {torch.__version__}, {payload['cpu']}, {args.threads} thread(s), {args.repeats} interleaved repeats "
        f"after a warm-up; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. Seconds (median, "
        "std); `ratio` is against Torch-Pruning's own trace of the same model (graph) or a bare `import torch` "
        "(explain).",
        "",
        "| model | what | median s | std s | ratio |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        "| command (fresh interpreter) | median s | std s | ratio to `import torch` |",
        "|---|---:|---:|---:|",
        *e_rows,
        "",
        *(["| model | build_channel_graph(verify=True), baseline s | this version s | ratio |",
           "|---|---:|---:|---:|", *w_rows, ""] if w_rows else []),
        "Reproduce: `OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/graph_speed.py"
        + (" --baseline-src <old>/src" if args.baseline_src else "") + "`.",
        "",
    ])
    write_results("graph_speed", payload, md)
    print(md)


if __name__ == "__main__":
    main()
