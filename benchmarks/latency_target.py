"""Pruning to a measured latency target: how close the measured latency lands, what it costs, and what a latency
target buys over a MACs target at equal measured latency.

**Part A — targeting** (zoo models with random weights, 3x32x32: latency depends on widths only; ``tv:NAME`` in
``--models-a`` is the torchvision model at 3x224x224, for the coverage environment only). Per model, batch
and target R: a latency profile of this machine (``profile_latency``, timed: *profile s*), then
``secateurs.structured.prune(..., latency_reduction=R, method="l1")`` (selection on the latency model, the pruned
network timed interleaved with the dense one, corrected up to 5 rounds: *search s*). Reported: the measured
reduction vs R, the predicted one, the rounds, and, for contrast, the measured latency reduction of the l1 plan
that removes R of the MACs (one measurement in the same setting).

**Part B — equal measured latency** (the committed dense checkpoints on Fashion-MNIST, 1x28x28). Per model and
target R: l1-latency (``latency_reduction=R``), AutoBot-latency (AutoBot's loss on the soft latency model), and
their MACs-targeted twins *at the same measured latency*: l1-MACs and AutoBot-MACs (bottlenecks trained on soft
MACs) with the MACs reduction searched until their measured latency reduction matches the latency-targeted run's
(``structured.latency.prune_to_latency`` with a MACs target and a measured goal). Accuracy on a fixed test subset
before fine-tuning, raw and after re-estimating BatchNorm statistics (20 batches, no gradient step), and after the
same short fine-tune for all four (``--finetune-epochs`` over a ``--finetune-subset`` of the training images, the
AutoBot fine-tuning recipe; ``--finetune-threads``, timing stays at ``--threads``). l1-latency ranks with
``select_channels``' default weight of latency for a latency cost (``LATENCY_COST_WEIGHT``, measured by
``benchmarks/cost_weight.py``); l1-MACs by score alone. The latency-targeted runs use the library's
``LatencyConfig.compare_macs`` (``--compare-macs``, default on): they build the MACs-priced plan at their
measured latency too and keep the one with the lower validation loss (``structured.candidates``); the JSON
records which (``plan_cost``) and both scores (``candidates``). The twin is searched afresh either way.

    python benchmarks/latency_target.py [--part A B] [--autobot-batches 60] [--finetune-epochs 1]

Part B loads each dense checkpoint from ``benchmarks/checkpoints`` (committed) or, for a model too large to
commit, the local cache that ``benchmarks/dense_baselines.py`` trains into; the results name which and how it was
trained. Reduced to fit a 2-core CPU (the results say so): part B on resnet20 and resnet56 by default
(``--models-b mobilenetv2`` or ``vgg16`` after ``dense_baselines.py --models ...``, vgg16 with ``--epochs 3
--train-subset 15000``: results/dense_baselines_vgg16_cache_retrain.md),
AutoBot with --autobot-batches steps instead of the paper's 200, a short fine-tune on a subset, a 2000-image test
subset.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import time

import torch

from _common import environment, write_results
from secateurs.cost._names import DTYPE_NAMES

TWIN_TOLERANCE = 0.02  # a MACs twin matches its latency-targeted run's measured reduction within this


def part_a(models, batches, targets, threads, log, device="cpu", dtype="float32",
           save=lambda rows: None) -> list[dict]:
    from secateurs.cost.profiling import profile_latency
    from secateurs.cost.measured import measure_latency
    from secateurs.errors import UnreachableTargetError
    from secateurs.graph import build_channel_graph
    from secateurs.structured import apply_plan, channel_scores, prune, select_channels
    from secateurs.structured.latency import LatencyConfig

    rows = []
    for name in models:
        torch.manual_seed(0)
        dense, shape = _part_a_model(name)
        dense = dense.to(device)  # the profile, the search and every timing run where the model lives
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)).to(device)
        graph = build_channel_graph(dense, x)
        scores = channel_scores(dense, graph, "l1")
        data = [(x, torch.zeros(1, dtype=torch.long, device=device))]
        for batch in batches:
            t0 = time.perf_counter()
            prof = profile_latency(dense, graph, shape, batch_size=batch, threads=threads, dtype=dtype)
            profile_s = time.perf_counter() - t0
            for r in targets:
                t0 = time.perf_counter()
                model = copy.deepcopy(dense)
                try:
                    res = prune(model, data, latency_reduction=r, method="l1", example_inputs=x, progress=False,
                                latency=LatencyConfig(batch_size=batch, threads=threads, profile=prof, dtype=dtype,
                                                      compare_macs=False))  # the latency-priced plan's targeting
                except UnreachableTargetError as e:  # refused early, with the reachable range: a result too
                    rows.append({"model": name, "batch": batch, "target": r, "unreachable": str(e),
                                 "profile_s": profile_s, "search_s": time.perf_counter() - t0,
                                 "profile_error_pct": prof.validation["mean_abs_error_pct"]})
                    log(f"A {name:12s} b{batch:<3d} R {r:.2f}: refused: {e}")
                    save(rows)
                    continue
                search_s = time.perf_counter() - t0
                s = res.summary()
                macs_plan = copy.deepcopy(dense)
                apply_plan(macs_plan, select_channels(graph, scores, r).plan, x, graph=graph, verify=False)
                m = measure_latency(dense, macs_plan, shape, batch_size=batch, threads=threads, dtype=dtype)
                row = {"model": name, "batch": batch, "target": r, "measured": s["latency_reduction"],
                       "predicted": s["latency_reduction_predicted"], "met": s["latency_target_met"],
                       "rounds": len(s["latency_rounds"]), "latency_ms_dense": s["latency_ms_dense"],
                       "latency_ms_measured": s["latency_ms_measured"], "macs_reduction": s["flops_reduction"],
                       "profile_s": profile_s, "search_s": search_s,
                       "profile_error_pct": prof.validation["mean_abs_error_pct"],
                       "macs_target_measured": m.reduction, "history": s["latency_rounds"],
                       "loadavg": [s["latency_setting"]["loadavg_before"], s["latency_setting"]["loadavg_after"]]}
                rows.append(row)
                log(f"A {name:12s} b{batch:<3d} R {r:.2f}: measured {row['measured']:.3f} (predicted "
                    f"{row['predicted']:.3f}, {row['rounds']} rounds, {'met' if row['met'] else 'MISSED'}); MACs "
                    f"{row['macs_reduction']:.3f}; a {r:.0%}-MACs plan measures {m.reduction:.3f}; profile "
                    f"{profile_s:.1f} s, search {search_s:.1f} s")
                save(rows)
    return rows


def part_b(models, targets, threads, autobot_batches, test_subset, log, batches=(1,), ft=None,
           save=lambda rows: None, min_fraction=0.0, free=None, ft_seeds=(0,), autobot_free=0.0,
           twin_rounds=6, methods=("l1", "autobot"), compare_macs=True) -> list[dict]:
    from autobot_common import accuracy, bn_recalibrated_accuracy, finetune, setup
    from secateurs.graph import build_channel_graph
    from secateurs.structured import (AutoBotConfig, Target, apply_plan, autoprune, channel_scores, max_reduction,
                                      prune, select_channels)
    from secateurs.structured.latency import LatencyConfig, latency_model, prune_to_latency

    rows = []
    for name in models:
        # the committed checkpoint, else the local cache (a model too large to commit: benchmarks/_common.py)
        ckpt, full, ft_data, test = setup(name, "fashion-mnist", ft["subset"] if ft else None, test_subset)
        dense = ckpt.model.eval()
        source = _dense_source(name, ckpt.summary)
        x = full.train_x[:1]
        shape = tuple(x.shape[1:])
        graph = build_channel_graph(dense, x)
        scores = channel_scores(dense, graph, "l1")
        dense_out = _out_channels(dense)
        ab = AutoBotConfig(batches=autobot_batches, batch_size=64, tolerance=0.02, min_fraction=min_fraction)
        ab_lat = dataclasses.replace(ab, free=autobot_free)  # the free-channel pass, AutoBot-latency only
        for batch, r in [(b, r) for b in batches for r in targets]:
            t0 = time.perf_counter()
            cost = latency_model(dense, graph, shape, LatencyConfig(batch_size=batch, threads=threads))
            profile_s = time.perf_counter() - t0
            eq = LatencyConfig(batch_size=batch, threads=threads, tolerance=TWIN_TOLERANCE, rounds=twin_rounds,
                               profile=cost.profile)
            out = {}

            def record(method, model, measured, macs_red, rounds, seconds):
                out[method] = {"accuracy": accuracy(model, test),
                               "accuracy_bn": bn_recalibrated_accuracy(model, full, test, seed=0),
                               "measured": measured, "macs_reduction": macs_red, "rounds": rounds,
                               "seconds": seconds, "params": sum(p.numel() for p in model.parameters()),
                               "out_channels": _out_channels(model)}
                kept = {k: v / dense_out[k] for k, v in out[method]["out_channels"].items() if k in dense_out}
                out[method]["min_kept_fraction"] = min(kept.values())
                if ft:  # the same fine-tune per seed for all four (data order and augmentation vary)
                    runs = [finetune(copy.deepcopy(model), ft_data, ft["epochs"], seed, 128, test,
                                     threads=ft["threads"]) for seed in ft_seeds]
                    out[method]["accuracy_ft_seeds"] = [a for a, _ in runs]
                    out[method]["accuracy_ft"] = sum(a for a, _ in runs) / len(runs)
                    out[method]["ft_seconds"] = sum(t for _, t in runs)
                log(f"B {name} b{batch} R {r:.2f} {method:15s}: measured {measured:.3f}, MACs {macs_red:.3f}, "
                    f"accuracy {out[method]['accuracy']:.4f} (BN re-estimated {out[method]['accuracy_bn']:.4f}, "
                    f"fine-tuned {out[method].get('accuracy_ft', float('nan')):.4f}), {seconds:.0f} s")

            for method in methods:
                t0 = time.perf_counter()
                model = copy.deepcopy(dense)
                res = prune(model, full, latency_reduction=r, method=method, config=ab_lat, progress=False,
                            evaluate_test=False, latency=dataclasses.replace(eq, tolerance=0.05, rounds=3, free=free,
                                                                             compare_macs=compare_macs))
                s = res.summary()
                record(f"{method}-latency", model, s["latency_reduction"], s["flops_reduction"],
                       len(s["latency_rounds"]), time.perf_counter() - t0)
                out[f"{method}-latency"].update(plan_cost=s["latency_plan_cost"], candidates=s["latency_candidates"])
                goal, start = s["latency_reduction"], s["flops_reduction"]
                t0 = time.perf_counter()
                twin = copy.deepcopy(dense)
                if method == "l1":
                    def select(t):
                        return select_channels(graph, scores, t)

                    sel, loop = prune_to_latency(dense, graph, x, Target(start, 0.01), eq, select,
                                                 max_reduction(graph), measured=goal)
                    apply_plan(twin, sel.plan, x, graph=graph)
                else:
                    found = {}

                    def choose(search):
                        sel, found["loop"] = prune_to_latency(dense, graph, x, Target(start, ab.tolerance), eq,
                                                              search, max_reduction(graph), measured=goal)
                        return sel

                    autoprune(twin, full, Target(start, ab.tolerance), config=ab, graph=graph, progress=False,
                              evaluate_test=False, choose=choose)
                    loop = found["loop"]
                record(f"{method}-macs", twin, loop.chosen.measured.reduction,
                       1 - _macs(twin, shape) / _macs(dense, shape), len(loop.rounds), time.perf_counter() - t0)
            rows.append({"model": name, "batch": batch, "target": r, "profile_s": profile_s, "dense": source,
                         "profile_error_pct": cost.profile.validation.get("mean_abs_error_pct"), **out})
            save(rows)
    return rows


def _dense_source(name: str, summary: dict) -> dict:
    """Where part B's dense model came from and how it was trained (a reduced run must show in the results)."""
    from _common import COMMITTED, checkpoint_dir

    path = checkpoint_dir(name, "fashion-mnist", 0)
    return {"committed": path.parent == COMMITTED, "path": str(path), "accuracy": summary.get("accuracy"),
            "epochs": summary.get("epochs"), "train_images": summary.get("train_images")}


def _part_a_model(name: str):
    """(model in eval mode, input shape) for part A: a zoo name at 3x32x32 with 10 classes, or ``tv:NAME``, the
    torchvision model of that name (random weights, 1000 classes) at 3x224x224. torchvision is imported only for
    ``tv:`` names (the coverage environment); it is not a dependency of the project."""
    from secateurs.models import create_model

    if name.startswith("tv:"):
        import torchvision

        return torchvision.models.get_model(name[3:], weights=None).eval(), (3, 224, 224)
    return create_model(name, num_classes=10, in_channels=3).eval(), (3, 32, 32)


def _out_channels(model) -> dict[str, int]:
    """Output channels of every conv (the kept widths, read off the pruned network)."""
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _width_gap(a: dict, b: dict) -> float:
    """How far two pruned networks' conv widths are apart: sum |a - b| over sum (a + b) / 2 (0: the same widths)."""
    wa, wb = a.get("out_channels", {}), b.get("out_channels", {})
    total = sum((wa[k] + wb[k]) / 2 for k in wa if k in wb)
    return sum(abs(wa[k] - wb[k]) for k in wa if k in wb) / total if total else float("nan")


def _macs(model, shape) -> int:
    from secateurs.flops import count_model

    return count_model(model, shape).macs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", nargs="+", default=["A", "B"], choices=["A", "B"])
    p.add_argument("--models-a", nargs="+", default=["resnet56", "vgg16", "mobilenetv2"])
    p.add_argument("--models-b", nargs="+", default=["resnet20", "resnet56"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--targets", nargs="+", type=float, default=[0.3, 0.5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="part A: where the models run and are timed (e.g. cuda)")
    p.add_argument("--dtype", default="float32", choices=DTYPE_NAMES,
                   help="part A: the inference dtype profiled and timed")
    p.add_argument("--autobot-batches", type=int, default=60)
    p.add_argument("--test-subset", type=int, default=2000)
    p.add_argument("--batches-b", nargs="+", type=int, default=[1], help="part B latency batch sizes")
    p.add_argument("--finetune-epochs", type=float, default=1.0, help="part B: 0 = no fine-tuning")
    p.add_argument("--finetune-subset", type=int, default=12000, help="part B: training images fine-tuned on")
    p.add_argument("--finetune-threads", type=int, default=2)
    p.add_argument("--autobot-min-fraction", type=float, default=0.0,
                   help="part B: AutoBotConfig.min_fraction of both AutoBot runs (default 0, the library's)")
    p.add_argument("--free", type=float, default=None,
                   help="part B: LatencyConfig.free of the latency-targeted runs (default: the library's): "
                        "l1-latency keeps the channels that cost at most this fraction of their group's mean channel")
    p.add_argument("--autobot-free", type=float, default=0.0,
                   help="part B: AutoBotConfig.free of AutoBot-latency's threshold search (default 0: off, the "
                        "library's); its MACs twin has nothing free")
    p.add_argument("--ft-seeds", nargs="+", type=int, default=[0], metavar="SEED",
                   help="part B: fine-tune every pruned model once per seed; the table gives the mean")
    p.add_argument("--compare-macs", choices=["on", "off"], default="on",
                   help="part B: LatencyConfig.compare_macs of the latency-targeted runs (default on, the library's)")
    p.add_argument("--twin-rounds", type=int, default=6,
                   help="part B: measure-and-correct rounds of each MACs twin's search for equal latency (runs before "
                        "this option: 4)")
    p.add_argument("--methods", nargs="+", default=["l1", "autobot"], choices=["l1", "autobot"],
                   help="part B: the methods whose latency-targeted run and MACs twin are compared")
    p.add_argument("--stem", default="latency_target")
    p.add_argument("--rewrite", action="store_true",
                   help="no run: regenerate results/<stem>.md from the committed <stem>.json with today's markdown")
    args = p.parse_args()
    if args.rewrite:
        from _common import rewrite_markdown

        rewrite_markdown(args.stem, lambda d: markdown(d["environment"], argparse.Namespace(**d["args"]),
                                                        d["part_a"], d["part_b"], d["partial"]))
        return
    if len(set(args.ft_seeds)) != len(args.ft_seeds):
        p.error(f"--ft-seeds: each seed once, got {args.ft_seeds}")  # a repeated seed would fake a zero spread
    from secateurs.structured.select._free import FREE_FRACTION

    free = args.free
    args.free = FREE_FRACTION if free is None else free  # recorded: the value in effect
    torch.set_num_threads(args.threads)
    os.environ.setdefault("SECATEURS_CACHE", os.path.expanduser("~/.cache/secateurs"))
    start = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    from secateurs.timing import allocator

    from secateurs.cost.latency_profile import device_name

    env0 = environment(args.threads) | {"allocator": allocator(), "device_name": device_name(args.device)}

    def save(a, b, partial=True):
        env = env0 | {"loadavg_end": os.getloadavg(), "elapsed_s": time.perf_counter() - start}
        write_results(args.stem, {"environment": env, "args": vars(args), "part_a": a, "part_b": b,
                                  "partial": partial}, markdown(env, args, a, b, partial))

    if args.device != "cpu" and "B" in args.part:
        p.error(f"--device {args.device}: part B runs on the CPU only (use --part A)")
    a = part_a(args.models_a, args.batches, args.targets, args.threads, log, device=args.device, dtype=args.dtype,
               save=lambda rows: save(rows, [])) if "A" in args.part else []
    save(a, [])
    ft = {"epochs": args.finetune_epochs, "subset": args.finetune_subset, "threads": args.finetune_threads} \
        if args.finetune_epochs > 0 else None
    b = part_b(args.models_b, args.targets, args.threads, args.autobot_batches, args.test_subset, log,
               batches=args.batches_b, ft=ft, save=lambda rows: save(a, rows),
               min_fraction=args.autobot_min_fraction, free=free, ft_seeds=args.ft_seeds,
               autobot_free=args.autobot_free, twin_rounds=args.twin_rounds, methods=args.methods,
               compare_macs=args.compare_macs == "on") \
        if "B" in args.part else []
    save(a, b, partial=False)


def markdown(env, args, a, b, partial=False) -> str:
    loads = [v[0] for r in a for v in r.get("loadavg", []) if v] + [env["loadavg_start"][0], env["loadavg_end"][0]]
    device = getattr(args, "device", "cpu")
    dtype = getattr(args, "dtype", "float32")
    where = (f"{env.get('device_name', device)} ({device}, {dtype}; timed with torch.cuda.synchronize around every "
             "block), host " if device != "cpu" else ("" if dtype == "float32" else f"{dtype}, "))
    md = ["# Pruning to a measured latency target", "",
          *(["**Partial**: the run was still going when this file was written; rows so far.", ""] if partial else []),
          f"torch {env['torch']}, {where}{env['cpu']} ({env['cpu_count']} cores), {args.threads} thread(s), "
          "runtime torch, "
          f"load average {min(loads):.2f}-{max(loads):.2f} (1-minute, sampled at each timing and at the ends): "
          "timings are interleaved, per round the fastest of 3 blocks, medians over rounds (`secateurs.timing`). Measured reduction = 1 - pruned / dense latency, dense and pruned "
          "timed in the same rounds; accepted within ±0.05 of the target, at most 5 measure-and-correct rounds. "
          f"Allocator: {env.get('allocator', 'as found (runs before secateurs.timing.steady_allocator)')}.", ""]
    if a:
        md += ["## A. Targeting: measured vs requested (l1 global, random weights; zoo models at 3x32x32, "
               "`tv:` torchvision models at 3x224x224)", "",
               "| model | batch | target | measured | predicted | rounds | met | MACs removed | a R-MACs plan "
               "measures | profile s | search s | profile held-out error % |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in a:
            if "unreachable" in r:
                md.append(f"| {r['model']} | {r['batch']} | {r['target']:.2f} | refused | | | unreachable | | | "
                          f"{r['profile_s']:.1f} | {r['search_s']:.1f} | {r['profile_error_pct']:.1f} |")
                continue
            md.append(f"| {r['model']} | {r['batch']} | {r['target']:.2f} | {r['measured']:.3f} | "
                      f"{r['predicted']:.3f} | {r['rounds']} | {'yes' if r['met'] else '**no**'} | "
                      f"{r['macs_reduction']:.3f} | {r['macs_target_measured']:.3f} | {r['profile_s']:.1f} | "
                      f"{r['search_s']:.1f} | {r['profile_error_pct']:.1f} |")
        met = sum(r.get("met", False) for r in a)
        refused = [r for r in a if "unreachable" in r]
        reachable = len(a) - len(refused)
        md += ["", f"{met} of {reachable} reachable rows within ±0.05 of the target. *Search s* includes every "
               "correction round's timing (3 s budget each) and the verified surgery."]
        if refused:
            md += ["", f"{len(refused)} row(s) refused before any search, as the library refuses a target its latency "
                   "model says is out of reach (the message, with the reachable range):", ""]
            md += [f"- {r['model']} batch {r['batch']}, target {r['target']:.2f}: {r['unreachable']}" for r in refused]
    if b:
        ft = (f"after {args.finetune_epochs:g} epoch(s) of fine-tuning on {args.finetune_subset} training images "
              f"(batch 128, the AutoBot recipe), mean over seeds {getattr(args, 'ft_seeds', [0])}") \
            if args.finetune_epochs > 0 else "no fine-tuning"
        md += ["", "## B. Accuracy at equal measured latency (Fashion-MNIST checkpoints, 1x28x28)",
               "", f"AutoBot: {args.autobot_batches} bottleneck steps of 64 (reduced from 200), min_fraction "
               f"{args.autobot_min_fraction:g}, free channels in AutoBot-latency's search "
               f"{getattr(args, 'autobot_free', 0.0):g} (0: off); l1-latency keeps free channels up to "
               f"{getattr(args, 'free', 0.0):g} of their group's mean channel cost (0: off; runs before this option "
               f"had none); accuracy on {args.test_subset} test images; *BN* = after re-estimating BatchNorm "
               "statistics on 20 training "
               f"batches; *FT* = {ft}. The MACs-targeted twin's MACs reduction was searched (at most "
               f"{getattr(args, 'twin_rounds', 4)} rounds) "
               f"to match its measured latency reduction to the latency-targeted run's within ±{TWIN_TOLERANCE:g}.",
               "",
               "| model | batch | target | method | measured reduction | MACs removed | params | thinnest conv kept | "
               "accuracy | accuracy (BN) | accuracy (FT) | rounds |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        wins = {"accuracy_bn": [], "accuracy_ft": []}
        unmatched = []
        for r in b:
            ran = [m for m in ("l1", "autobot") if f"{m}-latency" in r]
            for m in [f"{m}-{cost}" for m in ran for cost in ("latency", "macs")]:
                v = r[m]
                ftv = f"{100 * v['accuracy_ft']:.2f}" if "accuracy_ft" in v else "–"
                kept = " (kept the MACs-priced plan)" if v.get("plan_cost") == "macs" else ""
                if (v.get("candidates") or [{}])[0].get("score") == "recovery":
                    kept += " (compared after recovery)"
                md.append(f"| {r['model']} | {r.get('batch', 1)} | {r['target']:.2f} | {m}{kept} | {v['measured']:.3f} | "
                          f"{v['macs_reduction']:.3f} | {v.get('params', 0) / 1e3:.0f}k | "
                          f"{v.get('min_kept_fraction', float('nan')):.2f} | {100 * v['accuracy']:.2f} | "
                          f"{100 * v['accuracy_bn']:.2f} | {ftv} | {v['rounds']} |")
            n_seeds = len(r[f"{ran[0]}-latency"].get("accuracy_ft_seeds", []))
            if n_seeds > 1:
                diffs = []
                for m in ran:
                    d = [100 * (a - b) for a, b in zip(r[f"{m}-latency"]["accuracy_ft_seeds"],
                                                       r[f"{m}-macs"]["accuracy_ft_seeds"])]
                    diffs.append(f"{m} {statistics.fmean(d):+.2f} ± {statistics.stdev(d):.2f} (widths differ by "
                                 f"{_width_gap(r[f'{m}-latency'], r[f'{m}-macs']):.0%})")
                md.append(f"| | | | latency − MACs after FT, paired by seed (mean ± std over "
                          f"{n_seeds}) | {'; '.join(diffs)} | | | | | | | |")
            for m in ran:
                gap = r[f"{m}-macs"]["measured"] - r[f"{m}-latency"]["measured"]
                matched = abs(gap) <= TWIN_TOLERANCE + 1e-9
                if not matched:  # the twin's search ran out of rounds: not at equal latency
                    unmatched.append(f"{r['model']} {r['target']:.2f} {m} (twin {gap:+.4f})")
                for k in wins:
                    if k in r[f"{m}-latency"]:
                        wins[k].append((r[f"{m}-latency"][k] >= r[f"{m}-macs"][k], matched))
        for k, name in (("accuracy_bn", "after BN re-estimation"), ("accuracy_ft", "after fine-tuning")):
            if wins[k]:
                matched = [won for won, ok in wins[k] if ok]
                md.append(f"\nLatency-targeted at least as accurate as its MACs-targeted twin {name}: "
                          f"{sum(won for won, _ in wins[k])} of {len(wins[k])} pairs; {sum(matched)} of the "
                          f"{len(matched)} pairs at equal measured latency (±{TWIN_TOLERANCE:g}).")
        compared = [r[f"{m}-latency"] for r in b for m in ("l1", "autobot")
                    if r.get(f"{m}-latency", {}).get("candidates")]
        if compared:
            kept = sum(v["plan_cost"] == "macs" for v in compared)
            rivals = [v["candidates"][1] for v in compared if len(v["candidates"]) > 1]
            scored = sum(c["eligible"] for c in rivals)
            kinds = ("slower", "outside the target", "the same plan", "not built", "not scored")
            reasons = [f"{k} {sum(k in (c['reason'] or '') for c in rivals)}" for k in kinds
                       if any(k in (c["reason"] or "") for c in rivals)]
            recovered = sum(c.get("score") == "recovery" for c in rivals)
            md.append(f"\n`compare_macs` (on): the latency-targeted run also built the MACs-priced plan at its measured "
                      f"latency and kept the one with the lower validation loss after BN re-estimation (after "
                      f"`recovery_steps` of fine-tuning where both scored near chance: {recovered} of the runs); "
                      f"{scored} of {len(compared)} runs compared the two"
                      + (f" (the others' reasons: {'; '.join(reasons)})" if reasons else "")
                      + f", and {kept} kept the MACs-priced one (its row says so). A row of a latency-targeted run "
                      "that kept the MACs-priced plan compares that plan with the twin; its *rounds* are the kept "
                      "plan's search, its seconds include both searches and the scoring.")
        if unmatched:
            md.append(f"\nPairs not at equal measured latency: the twin's search ended more than ±{TWIN_TOLERANCE:g} "
                      "from the latency-targeted run's measured reduction (gap = twin minus latency-targeted; "
                      "positive: the twin is faster, negative: slower, and it then keeps more of the network): "
                      f"{', '.join(unmatched)}.")
    if b:
        dense = {}
        for r in b:
            dense.setdefault(r["model"], r.get("dense"))
        known = [f"{m} ({'committed' if d['committed'] else 'local cache, not committed'}; dense test accuracy "
                 f"{100 * d['accuracy']:.2f} % after {d['epochs']} epoch(s) on {d['train_images']} images)"
                 for m, d in dense.items() if d]
        md += ["", f"Dense checkpoints: {'; '.join(known)}." if known else "Dense checkpoints: the committed ones.",
               "", f"Reduced to fit the machine: part B on {' / '.join(dense)} only, short AutoBot runs, a short "
               "fine-tune on a subset, a test subset; a dense model from the local cache was trained on a shorter "
               "recipe (its line above)."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
