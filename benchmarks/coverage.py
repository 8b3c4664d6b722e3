"""Real-world coverage (issue 10): 20 torchvision/timm architectures through secateurs and through Torch-Pruning.

Per model, with **random weights and random inputs** (accuracy is not the point; coupling, counting and the
targets are):

* true MACs (``secateurs.flops.count_model``: attention matmuls included whatever the autograd mode), params;
  Weights initialised to exactly zero (torchvision ViT's head) are re-drawn from N(0, 0.02²) so no output check
  can pass on zeros;
* the channel graph (``build_channel_graph`` with its float64 verification): build time, groups prunable/fixed and
  the reasons of the fixed ones (by category), the largest reachable MACs reduction;
* ``l1`` (global) and AutoBot at 50%: the achieved reduction against the true count of the physically pruned model
  (``count_model`` again, not the soft model), params kept, time; both ``apply_plan``-verified (MACs, params,
  masked == pruned in float64). AutoBot trains its bottlenecks on ``--autobot-batches`` random batches of
  ``--autobot-batch-size`` images (defaults 4 x 2: enough to exercise the mechanism on one CPU thread, not to learn
  anything); a target the graph cannot reach is refused before any training with the reachable value;
* ONNX export (``export_onnx``) of the l1-pruned model (the dense one if l1 was refused) and an onnxruntime run
  compared with PyTorch;
* Torch-Pruning 1.6 on the same model: ``MetaPruner`` with L1 magnitude importance, local (uniform) ratio, the output
  layers ignored, ``num_heads`` for ``nn.MultiheadAttention``, stepped (``--tp-steps`` = 18 steps of 5% of the channels, up to ratio 0.9) until
  the *true* MACs are at most 50%; the achieved reduction, params kept and time, or the one-line error.

Each model runs in its own subprocesses (ours, then Torch-Pruning's), one at a time, under ``RLIMIT_DATA`` =
``--mem-gb`` (8 GB; the data limit, not the address-space one: the CUDA build of torch reserves ~3.7 GB of
address space at import) and a wall-time limit (``--timeout``; the analysis alone, count + graph, is stopped at
``--analysis-seconds`` = 60 s by ``GraphLimits``, checked between index mappings, with a SIGALRM backstop 30 s
later), so one bad model cannot stall the run; a killed child keeps the phases
it finished. Threads are pinned to ``--threads`` (1). The load average before and after each model is recorded:
the machine is shared.

Environment (too big for CI; not the project's venv): a separate virtual environment with
``pip install torch==2.14.1 torchvision==0.29.1 timm torch-pruning onnx onnxruntime`` (here ``/work/covenv``:
torch 2.14.1, torchvision 0.29.1, timm 1.0.31, torch-pruning 1.6.0), run from the repository root as

    PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 /work/covenv/bin/python benchmarks/coverage.py [--models a,b] [--out coverage]

Results: ``benchmarks/results/<out>.{json,md}`` (rewritten after every model). To keep a long run on one version
while the tree changes, point ``PYTHONPATH`` at an exported copy of ``src`` and set ``SECATEURS_COMMIT`` (recorded).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

MODELS = [
    "torchvision:resnet50", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
    "torchvision:efficientnet_b0", "torchvision:densenet121", "torchvision:googlenet",
    "torchvision:regnet_x_400mf", "torchvision:convnext_tiny", "torchvision:vit_b_16",
    "torchvision:shufflenet_v2_x1_0", "torchvision:squeezenet1_1", "torchvision:inception_v3",
    "timm:ghostnet_100", "timm:repvgg_a0", "timm:efficientvit_b0", "timm:resnet18d", "timm:mobilevitv2_050",
    "timm:regnety_002", "torchvision:swin_t", "torchvision:maxvit_t",
]
TARGET, TOL = 0.5, 0.005
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"

# fixed-group reasons by category (first match wins), so a table row stays short
CATEGORIES = [
    ("model output", r"model output"),
    ("cross-channel norm (LayerNorm/GroupNorm)", r"normalises across channels"),
    ("bare parameter coupled", r"bare parameter"),
    ("unsupported module", r"is not supported"),
    ("Torch-Pruning cannot map channels", r"cannot map channels|Torch-Pruning failed"),
    ("split/slice with sizes fixed in code", r"channel split/slice"),
    ("tied into a single channel", r"tied into a single one"),
    ("partial cover of conv groups/pieces", r"covers only part"),
    ("tied to an unprunable group", r"tied by a split"),
    ("verification: forward breaks", r"breaks the forward pass"),
    ("verification: output changes", r"changes the output|fails verification"),
    ("single attention head", r"single head"),
    ("overlapping groups", r"also belongs to group"),
    ("ignored layer", r"ignored_layers"),
]


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _category(reason: str) -> str:
    for name, pattern in CATEGORIES:
        if re.search(pattern, reason):
            return name
    return reason[:60]


def build_model(spec: str):
    import torch

    source, name = spec.split(":", 1)
    torch.manual_seed(0)
    if source == "torchvision":
        import torchvision

        kw = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(name, weights=None, **kw)
        size = 299 if name == "inception_v3" else 224
    else:
        import timm

        model = timm.create_model(name, pretrained=False)
        size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    with torch.no_grad():  # zero-initialised weights (ViT's head) would make every output check trivially pass
        for m in model.modules():
            w = getattr(m, "weight", None)
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and isinstance(w, torch.Tensor) and not w.any():
                w.normal_(0, 0.02)
    return model.eval(), (3, size, size)


class _Writer:
    """Partial results of one child, rewritten after every phase (a killed child keeps what it finished)."""

    def __init__(self, path: str):
        self.path, self.data = path, {}

    def __setitem__(self, key, value):
        self.data[key] = value
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)


class _Alarm(BaseException):
    """Not an ``Exception``: the tracer's per-group guard must not swallow it."""


def _alarm(seconds: float):
    def handler(*_):
        raise _Alarm(f"analysis (count + graph) took longer than {seconds:g} s")

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ours(spec: str, out: str, args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from secateurs.errors import GraphError
    from secateurs.flops import count_model, count_params
    from secateurs.graph import GraphLimits, build_channel_graph
    from secateurs.structured import (AutoBotConfig, apply_plan, channel_scores, export_onnx, max_reduction,
                                      select_channels)
    from secateurs.structured.autobot import autoprune

    w = _Writer(out)
    t0 = time.perf_counter()
    model, shape = build_model(spec)
    w["input_shape"] = list(shape)
    w["params"] = count_params(model)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    _alarm(args.analysis_seconds + 30)  # backstop: GraphLimits stops the trace itself, between index mappings
    try:
        t = time.perf_counter()
        dense = count_model(model, shape).macs
        w["true_macs"] = dense
        w["count_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            graph = build_channel_graph(model, x, limits=GraphLimits(seconds=args.analysis_seconds))
        except GraphError as e:
            w["analysis"] = {"status": "refused", "reason": _one_line(e), "seconds": time.perf_counter() - t,
                             "max_reduction": 0.0, "peak_mb": _peak_mb()}
            return
        graph_s = time.perf_counter() - t
    except _Alarm as e:
        w["analysis"] = {"status": "stopped", "reason": str(e), "seconds": time.perf_counter() - t0,
                         "max_reduction": 0.0, "peak_mb": _peak_mb()}
        return
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    fixed: dict[str, int] = {}
    for g in graph.groups:
        if not g.prunable:
            cat = _category(g.reason or "")
            fixed[cat] = fixed.get(cat, 0) + 1
    reach = max_reduction(graph)
    w["analysis"] = {
        "status": "ok", "graph_seconds": graph_s, "seconds": graph_s + w.data["count_seconds"],
        "groups": len(graph.groups), "prunable": len(graph.prunable_groups()),
        "heads": sum(1 for g in graph.prunable_groups() if g.id.endswith(":heads")),
        "fixed_reasons": dict(sorted(fixed.items(), key=lambda kv: -kv[1])), "max_reduction": reach,
        "graph_macs_equal_count": graph.total_macs == dense, "peak_mb": _peak_mb(),
    }

    def pruned_record(pruned, report, seconds, extra=None):
        true_after = count_model(pruned, shape).macs
        return {"status": "ok", "achieved": 1 - true_after / dense, "params_kept": count_params(pruned) / w.data["params"],
                "seconds": seconds, "report_macs_equal_count": report.macs_after == true_after,
                "max_rel_diff": report.max_rel_diff, **(extra or {})}

    l1_model = None
    t = time.perf_counter()
    try:
        sel = select_channels(graph, channel_scores(model, graph, "l1"), TARGET, tolerance=TOL)
        l1_model = copy.deepcopy(model)
        report = apply_plan(l1_model, sel.plan, x, graph=graph)
        w["l1"] = pruned_record(l1_model, report, time.perf_counter() - t)
    except Exception as e:  # noqa: BLE001 — the finding
        w["l1"] = {"status": "refused" if "reach" in str(e) else "error", "reason": _one_line(e),
                   "seconds": time.perf_counter() - t}
        l1_model = None

    t = time.perf_counter()
    try:
        target = l1_model if l1_model is not None else model
        with tempfile.TemporaryDirectory() as d:
            path = export_onnx(target, x, Path(d) / "m.onnx")
            import onnxruntime as ort

            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            x2 = torch.randn(2, *shape, generator=torch.Generator().manual_seed(2))
            got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x2.numpy()})[0])
            with torch.no_grad():
                want = target.eval()(x2)
            want = want[0] if isinstance(want, (tuple, list)) else want
            diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))
        w["onnx"] = {"status": "ok" if diff < 1e-3 else "mismatch", "model": "l1" if l1_model is not None else "dense",
                     "max_rel_diff": diff, "seconds": time.perf_counter() - t}
    except Exception as e:  # noqa: BLE001
        w["onnx"] = {"status": "error", "reason": _one_line(e), "seconds": time.perf_counter() - t}
    del l1_model

    t = time.perf_counter()
    gen = torch.Generator().manual_seed(3)
    classes = int(getattr(model, "num_classes", 1000) or 1000)
    data = [(torch.randn(args.autobot_batch_size, *shape, generator=gen),
             torch.randint(0, classes, (args.autobot_batch_size,), generator=gen)) for _ in range(args.autobot_batches)]
    try:
        ab_model = copy.deepcopy(model)
        cfg = AutoBotConfig(batches=args.autobot_batches, batch_size=args.autobot_batch_size, augment=False,
                            tolerance=TOL)
        res = autoprune(ab_model, data, TARGET, config=cfg, example_inputs=x, graph=graph, progress=False)
        w["autobot"] = pruned_record(ab_model, res.report, time.perf_counter() - t,
                                     {"selection": res.selection.method, "batches": args.autobot_batches,
                                      "batch_size": args.autobot_batch_size})
    except Exception as e:  # noqa: BLE001
        w["autobot"] = {"status": "refused" if "reach" in str(e) else "error", "reason": _one_line(e),
                        "seconds": time.perf_counter() - t}
    w["peak_mb"] = _peak_mb()


def _output_modules(model, x):
    """Leaf modules whose output tensor is the model output (Torch-Pruning must not prune them)."""
    import torch

    outs, hooks = {}, []
    for name, m in model.named_modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: outs.__setitem__(n, o)))
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    ys = [t for t in (y if isinstance(y, (tuple, list)) else [y]) if isinstance(t, torch.Tensor)]
    found = [n for n, o in outs.items() if isinstance(o, torch.Tensor) and any(o is t for t in ys)]
    if not found:  # the output is a view of the last layer's output (a flatten): take the last Linear/Conv
        import torch.nn as nn

        found = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1:]
    return [model.get_submodule(n) for n in found]


def child_tp(spec: str, out: str, args) -> None:
    import torch
    import torch.nn as nn
    import torch_pruning as tp

    torch.set_num_threads(args.threads)
    from secateurs.flops import count_model, count_params

    w = _Writer(out)
    model, shape = build_model(spec)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    dense, params = count_model(model, shape).macs, count_params(model)
    t = time.perf_counter()
    try:
        heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
        pruner = tp.pruner.MetaPruner(
            model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.9,
            iterative_steps=args.tp_steps, ignored_layers=_output_modules(model, x), num_heads=heads,
            global_pruning=False)
        w["graph_seconds"] = time.perf_counter() - t
        achieved = 0.0
        for step in range(args.tp_steps):
            pruner.step()
            achieved = 1 - count_model(model, shape).macs / dense
            w["partial"] = {"steps": step + 1, "achieved": achieved}
            if achieved >= TARGET:
                break
        w["result"] = {"status": "ok", "achieved": achieved, "params_kept": count_params(model) / params,
                       "steps": step + 1, "seconds": time.perf_counter() - t}
    except Exception as e:  # noqa: BLE001 — the finding
        tb = traceback.extract_tb(e.__traceback__)
        w["result"] = {"status": "error", "reason": _one_line(e), "traceback_lines": len(tb),
                       "seconds": time.perf_counter() - t}
    w["peak_mb"] = _peak_mb()


def run_child(kind: str, spec: str, args, timeout: float) -> dict:
    fd, path = tempfile.mkstemp(suffix=".json", prefix=f"cov-{kind}-")
    os.close(fd)
    limit = int(args.mem_gb * 2**30)

    def limits():
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, "--child", kind, "--models", spec, "--result", path,
           "--threads", str(args.threads), "--analysis-seconds", str(args.analysis_seconds),
           "--autobot-batches", str(args.autobot_batches), "--autobot-batch-size", str(args.autobot_batch_size),
           "--tp-steps", str(args.tp_steps)]
    t = time.perf_counter()
    status, tail = "done", ""
    try:
        proc = subprocess.run(cmd, env=env, preexec_fn=limits, timeout=timeout, capture_output=True, text=True)
        if proc.returncode != 0:
            status = f"exit {proc.returncode}"
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            tail = lines[-1][:200] if lines else ""
    except subprocess.TimeoutExpired:
        status = f"killed after the {timeout:g} s wall limit"
    try:
        data = json.loads(Path(path).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        data = {}
    finally:
        Path(path).unlink(missing_ok=True)
    data["child"] = {"status": status, "stderr_tail": tail, "wall_seconds": time.perf_counter() - t}
    return data


def _load(v) -> str:
    return "/".join(f"{x:.2f}" for x in v) if v else "-"


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "-"


def _cell(rec: dict | None) -> str:
    if not rec:
        return "not run"
    if rec.get("status") == "ok":
        ok = abs(rec["achieved"] - TARGET) <= TOL + 1e-9
        return f"{_pct(rec['achieved'])}{'' if ok else ' (miss)'}, params {_pct(rec['params_kept'])}"
    return f"{rec.get('status')}: {rec.get('reason', '')[:90]}"


def handled(r: dict) -> tuple[bool, str]:
    """The issue's target: pruned to 50% of the true MACs within ±0.5 point (l1 and AutoBot), or refused early with
    a one-line reason and the reachable value."""
    a = r.get("ours", {}).get("analysis", {})
    if a.get("status") in ("refused", "stopped"):
        return True, "refused early"
    if a.get("status") != "ok":
        return False, "analysis did not finish"
    recs = [r["ours"].get(k) or {} for k in ("l1", "autobot")]
    if all(x.get("status") == "ok" and abs(x["achieved"] - TARGET) <= TOL + 1e-9 for x in recs):
        return True, "pruned"
    if a["max_reduction"] < TARGET and all(x.get("status") == "refused" for x in recs):
        return True, f"refused (reachable {_pct(a['max_reduction'])})"
    return False, "; ".join(f"{k}: {x.get('status', 'not run')}" for k, x in zip(("l1", "autobot"), recs))


def _tp_summary(rows: list[dict]) -> str:
    res = [r.get("tp", {}).get("result") or {} for r in rows]
    done = [x for x in res if x.get("status") == "ok"]
    reached = [x for x in done if x["achieved"] >= TARGET - TOL]
    within = [x for x in done if abs(x["achieved"] - TARGET) <= TOL + 1e-9]
    return (f"Torch-Pruning: {len(done)}/{len(rows)} completed, {len(reached)} reached 50% of the true MACs "
            f"({len(within)} within ±0.5 point; its steps are 5% of the channels, so it overshoots).")


def markdown(payload: dict) -> str:
    env = payload["environment"]
    rows = payload["models"]
    ok = [handled(r)[0] for r in rows]
    lines = [
        "# Real-world coverage (issue 10)",
        "",
        f"{sum(ok)}/{len(rows)} models handled (pruned to 50% of the true MACs within ±0.5 point by both l1 and "
        "AutoBot, or refused early with the reachable value). Random weights and random inputs; AutoBot trained "
        f"its bottlenecks on {payload['args']['autobot_batches']} random batches of "
        f"{payload['args']['autobot_batch_size']} images. Torch-Pruning: local L1, stepped (5% of the channels a step) "
        "until the true MACs are at most 50%.",
        "",
        _tp_summary(rows),
        "",
        f"secateurs {env.get('commit')}, torch {env['torch']}, torchvision {env.get('torchvision')}, timm {env.get('timm')}, torch-pruning "
        f"{env.get('torch_pruning')}, onnxruntime {env.get('onnxruntime')}; {env['cpu']} ({env['cpu_count']} cores, "
        f"shared), {env['torch_threads']} thread; load average (1/5/15 min) at start {_load(env['loadavg_start'])}, "
        f"at end {_load(payload.get('loadavg_end'))}; memory limit {payload['args']['mem_gb']} GB (RLIMIT_DATA), analysis limit "
        f"{payload['args']['analysis_seconds']} s.",
        "",
        "| model | true GMACs | groups prunable/all | fixed (top reasons) | max reach | graph s | l1 @50% | "
        "AutoBot @50% | ONNX | Torch-Pruning | handled |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, a = r.get("ours", {}), r.get("ours", {}).get("analysis", {})
        gm = f"{o['true_macs'] / 1e9:.3f}" if "true_macs" in o else "-"
        if a.get("status") == "ok":
            groups = f"{a['prunable']}/{a['groups']}" + (f" ({a['heads']} head groups)" if a.get("heads") else "")
            reasons = "; ".join(f"{k} ({v})" for k, v in list(a["fixed_reasons"].items())[:3]) or "-"
            reach, gs = _pct(a["max_reduction"]), f"{a['graph_seconds']:.1f}"
        else:
            groups, reasons = "-", f"{a.get('status', o.get('child', {}).get('status'))}: {a.get('reason', '')}"
            reach = "0% (no graph)" if "max_reduction" in a else "-"
            gs = f"stopped at {a['seconds']:.0f}" if "seconds" in a else "-"
        onnx = o.get("onnx") or {}
        onnx_cell = (f"ok ({onnx['model']}, rel {onnx['max_rel_diff']:.1e})" if onnx.get("status") == "ok"
                     else f"{onnx['status']}: {onnx.get('reason', '')[:60]}" if onnx else "not run")
        tpr = r.get("tp", {}).get("result")
        if tpr is None:
            part = r.get("tp", {}).get("partial")
            tp_cell = r.get("tp", {}).get("child", {}).get("status", "not run") + (
                f" (after {part['steps']} steps: {_pct(part['achieved'])})" if part else "")
        else:
            tp_cell = (f"{_pct(tpr['achieved'])}, params {_pct(tpr['params_kept'])}, {tpr['seconds']:.0f} s"
                       if tpr["status"] == "ok" else f"error: {tpr['reason'][:80]}")
        child = o.get("child", {}).get("status", "")
        note = "" if child in ("done", "") else f" [{child}]"
        h, why = handled(r)
        lines.append(f"| {r['model']} | {gm} | {groups} | {reasons} | {reach} | {gs} | {_cell(o.get('l1'))} | "
                     f"{_cell(o.get('autobot'))} | {onnx_cell} | {tp_cell} | {'yes' if h else 'no'} ({why}){note} |")
    lines += ["", "Per-model wall time and peak memory (ours / Torch-Pruning):", ""]
    for r in rows:
        o, t = r.get("ours", {}), r.get("tp", {})
        lines.append(f"- {r['model']}: {o.get('child', {}).get('wall_seconds', 0):.0f} s, "
                     f"{o.get('peak_mb', o.get('analysis', {}).get('peak_mb', 0)):.0f} MB / "
                     f"{t.get('child', {}).get('wall_seconds', 0):.0f} s, {t.get('peak_mb', 0):.0f} MB; "
                     f"load {_load(r.get('loadavg_before'))} -> {_load(r.get('loadavg_after'))}")
    return "\n".join(lines) + "\n"


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated source:name list")
    p.add_argument("--out", default="coverage", help="results stem under benchmarks/results/")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mem-gb", type=float, default=8.0)
    p.add_argument("--timeout", type=float, default=420.0, help="wall limit of our child (all phases), seconds")
    p.add_argument("--tp-timeout", type=float, default=180.0, help="wall limit of Torch-Pruning's child, seconds")
    p.add_argument("--analysis-seconds", type=float, default=60.0)
    p.add_argument("--autobot-batches", type=int, default=4)
    p.add_argument("--autobot-batch-size", type=int, default=2)
    p.add_argument("--tp-steps", type=int, default=18)
    p.add_argument("--no-tp", action="store_true", help="skip Torch-Pruning")
    p.add_argument("--rewrite", action="store_true", help="only regenerate <out>.md from the committed <out>.json")
    p.add_argument("--child", choices=("ours", "tp"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        (child_ours if args.child == "ours" else child_tp)(args.models, args.result, args)
        return

    sys.path.insert(0, str(ROOT))
    if args.rewrite:
        from _common import rewrite_markdown

        rewrite_markdown(args.out, markdown)
        return
    import onnxruntime
    import timm
    import torch
    import torch_pruning
    import torchvision
    from _common import environment, write_results

    env = environment(args.threads)
    import secateurs

    env.update(torchvision=torchvision.__version__, timm=timm.__version__, torch_pruning=torch_pruning.__version__,
               onnxruntime=onnxruntime.__version__, secateurs_src=str(Path(secateurs.__file__).parent),
               commit=os.environ.get("SECATEURS_COMMIT") or _git_head())
    del torch
    payload = {"environment": env, "args": vars(args), "target": TARGET, "tolerance": TOL, "models": []}
    for spec in args.models.split(","):
        rec = {"model": spec, "loadavg_before": os.getloadavg()}
        print(f"[{time.strftime('%H:%M:%S')}] {spec}", flush=True)
        rec["ours"] = run_child("ours", spec, args, args.timeout)
        if not args.no_tp:
            rec["tp"] = run_child("tp", spec, args, args.tp_timeout)
        rec["loadavg_after"] = os.getloadavg()
        payload["models"].append(rec)
        payload["loadavg_end"] = os.getloadavg()
        write_results(args.out, payload, markdown(payload))
        print(f"    {handled(rec)}  ours {rec['ours']['child']}  tp {rec.get('tp', {}).get('child')}", flush=True)


if __name__ == "__main__":
    main()
