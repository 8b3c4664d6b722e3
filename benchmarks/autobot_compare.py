"""AutoBot vs the structured core's criteria (l1, bn, taylor, random; local and global) at the same achieved MACs.

For every model, MACs reduction R and seed: AutoBot prunes the cached dense checkpoint to R (achieved reduction in
[R, R + 1 point]); every baseline is then pruned to AutoBot's *achieved* reduction (window ±0.25 point around it,
widened to ±0.5 and ±1 point when no selection lands there) with ``secateurs.structured.prune`` (verified surgery),
and every method gets the same short fine-tune. Reported: accuracy before and after fine-tuning, achieved reduction, params, and AutoBot's
bottleneck time as a fraction of one dense training epoch (measured on the same machine and threads).

    python benchmarks/autobot_compare.py --models resnet20 --targets 0.5 0.65 --seeds 0 1 2 \\
        --finetune-epochs 1 --train-subset 5000 --test-subset 2000 --threads 1

Seeds vary AutoBot's batches and augmentation, the random criterion and the fine-tune; the dense checkpoint is
always seed 0 (``benchmarks/dense_baselines.py``).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

from _common import environment, fmt, mean_std, write_results
from autobot_common import accuracy, bn_recalibrated_accuracy, epoch_seconds, finetune, setup


def baseline(model, data, graph, example, criterion, scope, reduction, seed, taylor_batches):
    """A copy of ``model`` pruned by ``criterion`` / ``scope`` to within ``tol / 2`` of AutoBot's achieved
    ``reduction`` (the budget ``[reduction - tol/2, reduction + tol/2]``, tol = 0.5, 1, then 2 points), with the
    front door; (model, report or error text, seconds)."""
    from secateurs.errors import ArgumentError
    from secateurs.structured import TargetError, prune

    m = copy.deepcopy(model)  # pruned only when a selection lands (the target is checked before the surgery)
    t0 = time.perf_counter()
    for tol in (0.005, 0.01, 0.02):
        try:
            res = prune(m, data, flops_reduction=max(0.0, reduction - tol / 2), tolerance=tol, method=criterion,
                        scope=scope, calib_batches=taylor_batches, batch_size=64, seed=seed, example_inputs=example,
                        graph=graph, evaluate_test=False, progress=False)
            return m, res.report, time.perf_counter() - t0
        except TargetError:
            continue
        except ArgumentError as e:  # e.g. bn on a network without BatchNorm
            return m, e.reason.splitlines()[0], time.perf_counter() - t0
    return m, "no selection within 1 point of AutoBot's reduction", time.perf_counter() - t0


def _fail(message: str) -> None:
    """One line on stderr, exit status 2 (bad input)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def parse_variant(spec: str) -> dict:
    """``"cost_power=0.5,beta=2"`` -> AutoBotConfig overrides, each value converted to its field's type and
    checked by AutoBotConfig (a bad one: one line, exit 2)."""
    from dataclasses import fields

    from secateurs.structured.autobot import AutoBotConfig

    types = {f.name: type(getattr(AutoBotConfig(), f.name)) for f in fields(AutoBotConfig)}
    out = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in types or not value:
            _fail(f"--autobot-variants: {item!r} is not FIELD=VALUE of AutoBotConfig")
        kind = types[key]
        try:
            out[key] = value.lower() in ("1", "true", "on") if kind is bool else kind(value)
        except ValueError:
            _fail(f"--autobot-variants: {item!r}: {key} takes a {kind.__name__}")
    try:
        AutoBotConfig(**out)
    except ValueError as e:
        _fail(f"--autobot-variants: {spec!r}: {e}")
    return out


def run_one(args, model_name, R, seed, ckpt, full, ft, test, graph, epoch_s, log, rows, save):
    """AutoBot (and its ``--autobot-min-fraction`` / ``--autobot-variants`` variants), then the baselines at
    AutoBot's achieved MACs; appends to ``rows`` and calls ``save()`` after every row (a run cut short keeps
    what it measured)."""
    from secateurs.structured import TargetError
    from secateurs.structured.autobot import AutoBotConfig, autoprune

    example = full.train_x[:1]
    achieved = None
    variants = [{}] + [{"min_fraction": f} for f in args.autobot_min_fraction if f > 0] + [
        parse_variant(v) for v in args.autobot_variants]
    for variant in variants:
        m = copy.deepcopy(ckpt.model)
        cfg = AutoBotConfig(**{"batches": args.batches, "seed": seed, **variant})
        name = "autobot" + ("" if not variant else " " + ",".join(f"{k}={v:g}" if isinstance(v, float) else
                                                                   f"{k}={v}" for k, v in variant.items()))
        try:
            res = autoprune(m, full, R, config=cfg, example_inputs=example, graph=graph, progress=False)
        except TargetError as e:
            if not variant:
                raise
            rows.append({"model": model_name, "target": R, "seed": seed, "method": name, "scope": cfg.scope,
                         "error": e.reason.splitlines()[0]})
            log(rows[-1])
            save()
            continue
        before = accuracy(m, test)
        before_bn = bn_recalibrated_accuracy(m, full, test, seed)
        after, ft_s = finetune(m, ft, args.finetune_epochs, seed, args.finetune_batch_size, test,
                               teacher=ckpt.model if args.distill else None)
        achieved = res.report.macs_reduction if achieved is None else achieved  # the baselines match the default
        rows.append({"model": model_name, "target": R, "seed": seed,
                     "method": name, "scope": cfg.scope,
                     "reduction": res.report.macs_reduction, "macs": res.report.macs_after,
                     "params": res.report.params_after,
                     "acc_before_ft": before, "acc_before_ft_bn": before_bn, "acc_after_ft": after, "finetune_s": ft_s,
                     "bottleneck_s": res.bottleneck_seconds, "bottleneck_images": res.bottleneck_images,
                     "bottleneck_epoch_fraction": res.bottleneck_seconds / epoch_s,
                     "selection": res.selection.method, "widths": {g: len(k) for g, k in res.plan.groups.items()}})
        log(rows[-1])
        save()
    pairs = ([tuple(b.split(":")) for b in args.baselines] if args.baselines is not None
             else [(c, s) for c in args.criteria for s in args.scopes])
    for crit, scope in pairs:
        pm, report, select_s = baseline(ckpt.model, full, graph, example, crit, scope, achieved, seed,
                                        args.taylor_batches)
        row = {"model": model_name, "target": R, "seed": seed, "method": crit, "scope": scope,
               "select_s": select_s}
        if isinstance(report, str):
            row["error"] = report
        else:
            before = accuracy(pm, test)
            before_bn = bn_recalibrated_accuracy(pm, full, test, seed)
            after, ft_s = finetune(pm, ft, args.finetune_epochs, seed, args.finetune_batch_size, test,
                                  teacher=ckpt.model if args.distill else None)
            row.update(reduction=report.macs_reduction, macs=report.macs_after, params=report.params_after,
                       acc_before_ft=before, acc_before_ft_bn=before_bn, acc_after_ft=after, finetune_s=ft_s)
        rows.append(row)
        log(row)
        save()


def markdown(rows, dense, args, env, settings, elapsed):
    md = ["# AutoBot vs structured criteria (fashion-mnist)", "",
          f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} cores, {args.threads} thread(s)); "
          f"{elapsed / 60:.0f} min in all; 1-minute load average {env['loadavg_start'][0]:.2f} at the start"
          + (f", {env['loadavg_now'][0]:.2f} at the last row" if "loadavg_now" in env else "")
          + f". Mean ± std over seeds {sorted({r['seed'] for r in rows})}.", "",
          "**Reduced configuration** (CPU budget): " + settings["reduced"], "",
          "Baselines are selected at AutoBot's *achieved* MACs reduction of the same seed (±0.25 point; wider only "
          "if a selection cannot land there, see `reduction`). Every method gets the same fine-tune. Accuracies in %. "
          "`before FT + BN` (when recorded): the pruned network after re-estimating BatchNorm statistics on 20 "
          "training batches of 64 (forward passes only, no weight update): how much of the before-fine-tuning gap "
          "is stale BN statistics.", ""]
    for model_name, d in dense.items():
        md += [f"## {model_name}: dense {d['accuracy'] * 100:.2f}% on the test subset, {d['params']:,} params, "
               f"{d['macs'] / 1e6:.2f} M MACs; one training epoch (55,000 images) ≈ {d['epoch_s']:.0f} s here; "
               f"dense checkpoint `{d['checkpoint']}` ({d['dense_epochs']} epochs"
               f"{_subset(d)})", ""]
        for R in sorted({r["target"] for r in rows if r["model"] == model_name}):
            sub = [r for r in rows if r["model"] == model_name and r["target"] == R]
            md += [f"### target {R:.0%} fewer MACs", "",
                   "| method | scope | MACs reduction (%) | params | acc before FT | before FT + BN | acc after FT "
                   "| seeds |",
                   "|---|---|---|---|---|---|---|---|"]
            keys = list(dict.fromkeys((r["method"], r["scope"]) for r in sub))
            for method, scope in keys:
                rs = [r for r in sub if r["method"] == method and r["scope"] == scope and "error" not in r]
                if not rs:
                    why = next((r["error"] for r in sub if r["method"] == method and "error" in r), "")
                    md.append(f"| {method} | {scope} | – | – | n/a: {why[:80]} | – | – | 0 |")
                    continue
                bn = fmt([r["acc_before_ft_bn"] for r in rs]) if all("acc_before_ft_bn" in r for r in rs) else "–"
                md.append(f"| {'**AutoBot**' if method == 'autobot' else method} | {scope} | "
                          f"{fmt([r['reduction'] for r in rs])} | {mean_std([r['params'] for r in rs])[0]:,.0f} | "
                          f"{fmt([r['acc_before_ft'] for r in rs])} | {bn} | {fmt([r['acc_after_ft'] for r in rs])} | "
                          f"{len(rs)} |")
            ab = [r for r in sub if r["method"] == "autobot"]
            for variant in dict.fromkeys(r["method"] for r in sub if r["method"].startswith("autobot ")):
                by_seed = {r["seed"]: r for r in ab}
                pairs = [(r, by_seed[r["seed"]]) for r in sub
                         if r["method"] == variant and "error" not in r and r["seed"] in by_seed]
                if pairs:
                    diffs = {k: fmt([a[k] - b[k] for a, b in pairs]) for k in ("acc_before_ft_bn", "acc_after_ft")}
                    md += ["", f"{variant} − AutoBot, paired by seed ({len(pairs)}): before FT + BN "
                               f"{diffs['acc_before_ft_bn']}, after FT {diffs['acc_after_ft']} points."]
            md += ["", f"AutoBot bottleneck training: {fmt([r['bottleneck_s'] for r in ab], 1, 1)} s on "
                       f"{ab[0]['bottleneck_images']:,} images = {fmt([r['bottleneck_epoch_fraction'] for r in ab])}% "
                       f"of one dense training epoch in wall time "
                       f"({ab[0]['bottleneck_images'] / d['train_images']:.1%} of the epoch's images).", ""]
    return "\n".join(md) + "\n"


def headline(rows, dense) -> list[str]:
    """One line per (model, target): AutoBot against the best baseline (by mean over seeds) in each column."""
    md = ["## Headline: AutoBot vs the best baseline in each column (mean over seeds, %)", "",
          "| model | target | AutoBot before FT | best baseline before FT | AutoBot before FT + BN | "
          "best baseline + BN | AutoBot after FT | best baseline after FT |", "|---|---|---|---|---|---|---|---|"]

    def best(sub, key):
        means = {}
        for r in sub:
            if not r["method"].startswith("autobot") and key in r:
                means.setdefault((r["method"], r["scope"]), []).append(r[key])
        if not means:
            return "–"
        (m, sc), vals = max(means.items(), key=lambda kv: mean_std(kv[1])[0])
        return f"{mean_std(vals)[0] * 100:.2f} ({m} {sc})"

    def ab(sub, key):
        vals = [r[key] for r in sub if r["method"] == "autobot" and key in r]
        return f"{mean_std(vals)[0] * 100:.2f}" if vals else "–"

    for model_name in dense:
        for R in sorted({r["target"] for r in rows if r["model"] == model_name}):
            sub = [r for r in rows if r["model"] == model_name and r["target"] == R and "error" not in r]
            md.append(f"| {model_name} | {R:.0%} | {ab(sub, 'acc_before_ft')} | {best(sub, 'acc_before_ft')} | "
                      f"{ab(sub, 'acc_before_ft_bn')} | {best(sub, 'acc_before_ft_bn')} | "
                      f"{ab(sub, 'acc_after_ft')} | {best(sub, 'acc_after_ft')} |")
    return md + [""]


def merge(stems: list[str], out: str) -> None:
    """Re-render several results files (e.g. one per model, run side by side) as one table; nothing is re-run."""
    import json
    from types import SimpleNamespace

    from _common import RESULTS

    parts = [json.loads((RESULTS / f"{stem}.json").read_text()) for stem in stems]
    rows = [r for part in parts for r in part["rows"]]
    dense = {k: v for part in parts for k, v in part["dense"].items()}
    reduced = list(dict.fromkeys(part["settings"]["reduced"] for part in parts))
    settings = {"reduced": " / ".join(reduced), "merged_from": stems}
    threads = sorted({part["settings"]["threads"] for part in parts})
    elapsed = sum(part["elapsed_s"] for part in parts)
    env = parts[0]["environment"]
    md = markdown(rows, dense, SimpleNamespace(threads="/".join(map(str, threads))), env, settings, elapsed)
    title, rest = md.split("\n", 1)
    md = "\n".join([title, "", f"Merged from {', '.join(f'`{s}.md`' for s in stems)} (run side by side; "
                     f"the minutes add up their wall times).", "", *headline(rows, dense)]) + rest
    write_results(out, {"environment": env, "settings": settings, "dense": dense, "rows": rows,
                        "elapsed_s": elapsed, "parts": [{"stem": s, "settings": p["settings"],
                                                         "environment": p["environment"]} for s, p in
                                                        zip(stems, parts)]}, md)


def _subset(d: dict) -> str:
    n = d.get("dense_train_images")
    return f" on a {n:,}-image training subset" if n and n < d["train_images"] else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "vgg16"])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.65])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--criteria", nargs="+", default=["l1", "bn", "taylor", "random"])
    p.add_argument("--scopes", nargs="+", default=["local", "global"])
    p.add_argument("--baselines", nargs="*", metavar="CRITERION:SCOPE", default=None,
                   help="exactly these baselines (e.g. l1:global bn:global taylor:local) instead of "
                        "--criteria x --scopes; the flag alone: none (AutoBot rows only)")
    p.add_argument("--batches", type=int, default=200, help="AutoBot bottleneck batches (of 64)")
    p.add_argument("--taylor-batches", type=int, default=10, help="batches of 64 for the taylor criterion")
    p.add_argument("--autobot-min-fraction", type=float, nargs="*", default=[],
                   help="also run AutoBot with these AutoBotConfig.min_fraction values (the baselines match the "
                        "default run's MACs)")
    p.add_argument("--autobot-variants", nargs="*", default=[], metavar="FIELD=VALUE[,FIELD=VALUE]",
                   help="also run AutoBot with these AutoBotConfig overrides, e.g. cost_power=0.5 (the baselines "
                        "match the default run's MACs)")
    p.add_argument("--finetune-epochs", type=float, default=1.0)
    p.add_argument("--finetune-batch-size", type=int, default=128)
    p.add_argument("--distill", action="store_true",
                   help="fine-tune every method by distillation from the dense checkpoint (library defaults A, T)")
    p.add_argument("--train-subset", type=int, default=None, help="fine-tune on N training images (default all)")
    p.add_argument("--test-subset", type=int, default=None, help="evaluate on N test images (default all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dense-dir", default=None, help="load dense checkpoints from here, not the shared cache")
    p.add_argument("--stem", default="autobot_compare")
    p.add_argument("--reduced", default="none: the full configuration", help="what was reduced, for the report")
    p.add_argument("--merge", nargs="+", metavar="STEM", default=None,
                   help="run nothing: combine these results files (results/STEM.json) into --stem, with a headline")
    args = p.parse_args()
    for spec in args.autobot_variants:  # bad input fails here, before the dense model is loaded and timed
        parse_variant(spec)
    if args.merge:
        merge(args.merge, args.stem)
        return
    torch.set_num_threads(args.threads)
    from secateurs.flops import count_model
    from secateurs.graph import build_channel_graph

    t0 = time.perf_counter()
    env = environment(args.threads)
    settings = {k: v for k, v in vars(args).items()}
    rows, dense = [], {}

    def log(row):
        keys = ("method", "scope", "reduction", "acc_before_ft", "acc_before_ft_bn", "acc_after_ft", "bottleneck_s",
                "error")
        print(f"[{time.perf_counter() - t0:6.0f}s] {row['model']} R={row['target']} seed={row['seed']} " +
              " ".join(f"{k}={row[k]:.4f}" if isinstance(row.get(k), float) else f"{k}={row[k]}"
                       for k in keys if k in row), flush=True)

    for model_name in args.models:
        ckpt, full, ft, test = setup(model_name, args.data, args.train_subset, args.test_subset,
                                     dense_dir=args.dense_dir)
        example = full.train_x[:1]
        graph = build_channel_graph(ckpt.model, example)
        cost = count_model(ckpt.model, full.input_shape)
        dense[model_name] = {"accuracy": accuracy(ckpt.model, test), "params": cost.params, "macs": cost.macs,
                             "epoch_s": epoch_seconds(ckpt.model, full), "train_images": len(full.train_x),
                             "checkpoint": str(ckpt.path), "dense_epochs": ckpt.summary.get("epochs"),
                             "dense_train_images": ckpt.summary.get("train_images")}
        print(f"{model_name}: dense {dense[model_name]}", flush=True)
        def save():
            elapsed = time.perf_counter() - t0
            now = env | {"loadavg_now": os.getloadavg()}
            payload = {"environment": now, "settings": settings, "dense": dense, "rows": rows, "elapsed_s": elapsed}
            write_results(args.stem, payload, markdown(rows, dense, args, now, settings, elapsed))

        for seed in args.seeds:  # seeds outermost: a run cut short still has every target for the first seeds
            for R in args.targets:
                run_one(args, model_name, R, seed, ckpt, full, ft, test, graph, dense[model_name]["epoch_s"], log,
                        rows, save)


if __name__ == "__main__":
    main()
