"""`prune` / `autoprune` with a latency target, end to end on a tiny trained checkpoint (digits) and a synthetic
profile (fixtures.latency): the summary records predicted and measured latency, bad input is one line, exit 2.
No timing value is asserted."""
import json

import pytest

from fixtures.latency import macs_profile
from fixtures.cli import fails as _fails
from secateurs.cli import main
from secateurs.graph import build_channel_graph
from secateurs.io import load_checkpoint

QUIET = ["--quiet", "--threads", "1"]
FAST = ["--latency-time-budget", "0"]  # 5 timing rounds per correction round


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "mlp"
    assert main(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--batch-size", "64",
                 "--no-augment", "--out", str(out)] + QUIET) == 0
    return out


@pytest.fixture(scope="module")
def profile(dense, tmp_path_factory):
    ckpt = load_checkpoint(dense)
    import torch

    x = torch.zeros(1, *ckpt.spec.input_shape)
    graph = build_channel_graph(ckpt.model.eval(), x)
    path = tmp_path_factory.mktemp("prof") / "lat.json"
    macs_profile(ckpt.model, graph, tuple(ckpt.spec.input_shape)).save(path)
    return path


def test_prune_to_a_latency_reduction(dense, profile, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-reduction",
                 "0.4", "--latency-profile", str(profile), "--latency-rounds", "3", "--out", str(out)]
                + QUIET + FAST) == 0
    assert "ms measured" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["requested_latency_reduction"] == 0.4 and s["requested_flops_reduction"] is None
    for k in ("latency_ms_dense", "latency_ms_predicted", "latency_ms_measured", "latency_reduction"):
        assert isinstance(s[k], float), k
    assert s["latency_setting"]["batch_size"] == 1 and s["latency_setting"]["threads"] == 1
    assert s["latency_setting"]["runtime"] == "torch" and "loadavg_before" in s["latency_setting"]
    assert s["latency_setting"]["allocator"] in ("glibc steady", "as found")
    assert 1 <= len(s["latency_rounds"]) <= 3
    # --compare-macs on by default: both candidates recorded, the kept one named
    assert [c["cost"] for c in s["latency_candidates"]] == ["latency", "macs"]
    assert s["latency_plan_cost"] in ("latency", "macs") and sum(c["chosen"] for c in s["latency_candidates"]) == 1
    assert main(["report", str(out), "--no-latency"]) == 0  # the report shows the same numbers
    table = capsys.readouterr().out
    assert "Latency targets" in table and f"{s['latency_ms_measured']:.3f}" in table


def test_autoprune_to_a_latency_in_ms_with_round_to(dense, profile, tmp_path):
    prof = json.loads(profile.read_text())
    out = tmp_path / "a"
    assert main(["autoprune", "--checkpoint", str(dense), "--data", "digits", "--target-latency-ms",
                 str(0.6 * prof["fit"]["dense_ms"]), "--latency-profile", str(profile), "--batches", "3",
                 "--batch-size", "16", "--tolerance", "0.05", "--round-to", "4", "--compare-macs", "off",
                 "--out", str(out)] + QUIET + FAST) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["latency_candidates"] is None and s["latency_plan_cost"] is None  # --compare-macs off
    assert s["requested_latency_ms"] == pytest.approx(0.6 * prof["fit"]["dense_ms"])
    assert all(w % 4 == 0 or w == s["widths_dense"][g] for g, w in s["widths"].items())
    assert "latency_ms_measured" in s


@pytest.mark.parametrize("extra, needles", [
    (["--target-latency-ms", "1e6"], ["--target-latency-ms", "already runs in"]),
    (["--latency-reduction", "0.999"], ["--latency-reduction 0.999", "at most"]),
    (["--latency-reduction", "0.3", "--flops-reduction", "0.3"], ["not allowed with"]),
    (["--latency-reduction", "0.3", "--latency-batch-size", "8"], ["--latency-profile", "measured for"]),
    (["--latency-reduction", "0.3", "--latency-batch-size", "0"], ["--latency-batch-size"]),
    (["--latency-reduction", "1.5"], ["--latency-reduction"]),
    (["--flops-reduction", "0.3"], ["--latency-profile: applies to a latency target", "not to --flops-reduction"]),
    (["--latency-reduction", "0.3", "--dtype", "bfloat16"], ["--latency-profile", "measured for"]),  # --dtype used
    (["--latency-reduction", "0.3", "--runtime", "onnxruntime", "--dtype", "bfloat16"], ["--dtype bfloat16", "numpy"]),
    (["--latency-reduction", "0.3", "--recovery-steps", "-1"], ["--recovery-steps must be >= 0, got -1"]),
    (["--latency-reduction", "0.3", "--compare-macs", "off", "--recovery-steps", "10"],
     ["--recovery-steps 10: applies with --compare-macs on"]),
])
def test_bad_latency_targets(dense, profile, tmp_path, capsys, extra, needles):
    _fails(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-profile",
            str(profile), "--out", str(tmp_path / "x")] + QUIET + extra, capsys, *needles)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["prune", "autoprune"])
@pytest.mark.parametrize("flag, value", [("--latency-batch-size", "4"), ("--runtime", "torch"), ("--dtype", "float64"),
                                         ("--latency-tolerance", "0.1"), ("--latency-rounds", "2"),
                                         ("--latency-time-budget", "1"), ("--compare-macs", "off"),
                                         ("--recovery-steps", "10")])
def test_latency_flags_with_a_macs_target_are_refused_not_ignored(dense, tmp_path, capsys, command, flag, value):
    extra = ["--criterion", "l1"] if command == "prune" else []
    _fails([command, "--checkpoint", str(dense), "--data", "digits", *extra, "--flops-reduction", "0.3", flag, value,
            "--out", str(tmp_path / "x")] + QUIET, capsys, f"{flag}: applies to a latency target")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("given, steps", [([], 50), (["--recovery-steps", "7"], 7), (["--recovery-steps", "0"], 0)])
def test_recovery_steps_reach_the_latency_config(given, steps):
    from secateurs.cli import build_parser
    from secateurs.cli._structured import target_kwargs
    from secateurs.structured.candidates import RECOVERY_STEPS

    args = build_parser().parse_args(["prune", "--checkpoint", ".", "--data", "digits", "--criterion", "l1", "--out",
                                      "x", "--latency-reduction", "0.3", *given])
    assert target_kwargs(args)["latency"].recovery_steps == steps and RECOVERY_STEPS == 50


def test_bad_profile_file_and_missing_runtime(dense, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nope"}')
    _fails(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-reduction",
            "0.3", "--latency-profile", str(bad), "--out", str(tmp_path / "x")] + QUIET, capsys, "--latency-profile",
           "format")
    import secateurs.cost.latency_profile as lp

    def missing():
        raise ImportError("onnxruntime is not installed (pip install onnxruntime)")

    monkeypatch.setattr(lp, "require_onnxruntime", missing)
    _fails(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-reduction",
            "0.3", "--runtime", "onnxruntime", "--out", str(tmp_path / "x")] + QUIET, capsys, "--runtime",
           "not installed")


def test_unreachable_ms_target_is_said_in_ms(dense, profile, tmp_path, capsys):
    prof = json.loads(profile.read_text())
    _fails(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--target-latency-ms",
            str(prof["fit"]["dense_ms"] / 1000), "--latency-profile", str(profile), "--out", str(tmp_path / "x")]
           + QUIET, capsys, "--target-latency-ms", "the fastest selection runs in", "ms by the latency model",
           "latency reduction is beyond")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_prune_to_a_half_precision_latency(dense, tmp_path, dtype):
    """--dtype on prune: a bfloat16 / float16 profile (secateurs profile --dtype D) is usable, and the pruned model
    is timed in that dtype; the saved checkpoint keeps its float32 weights."""
    import torch

    ckpt = load_checkpoint(dense)
    graph = build_channel_graph(ckpt.model.eval(), torch.zeros(1, *ckpt.spec.input_shape))
    path = tmp_path / f"{dtype}.json"
    macs_profile(ckpt.model, graph, tuple(ckpt.spec.input_shape), dtype=dtype).save(path)
    out = tmp_path / "p"
    assert main(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-reduction",
                 "0.4", "--dtype", dtype, "--latency-profile", str(path), "--out", str(out)] + QUIET + FAST) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["latency_setting"]["dtype"] == dtype and s["latency_profile"]["key"]["dtype"] == dtype
    assert all(p.dtype == torch.float32 for p in load_checkpoint(out).model.parameters())


def test_report_on_a_hand_edited_summary_shows_dashes(dense, tmp_path, capsys):
    import shutil

    ckpt = tmp_path / "edited"
    shutil.copytree(dense, ckpt)
    s = json.loads((ckpt / "summary.json").read_text()) if (ckpt / "summary.json").exists() else {}
    s.update({"latency_ms_dense": 2.0, "latency_ms_measured": 1.0,
              "latency_setting": {"batch_size": 1, "loadavg_before": ["busy"], "loadavg_after": "x"}})
    (ckpt / "summary.json").write_text(json.dumps(s))
    assert main(["report", str(ckpt), "--no-latency"]) == 0
    out = capsys.readouterr().out
    line = [l for l in out.split("Latency targets")[1].splitlines() if l.startswith("| edited |")][0]
    assert "| 2.000 | 1.000 | 0.500 |" in line and line.endswith("| - |")


def test_a_plan_that_removes_nearly_all_the_macs_warns_in_one_line(dense, tmp_path, capsys):
    ckpt = load_checkpoint(dense)
    import torch

    from secateurs.cost.latency import LatencyModel

    graph = build_channel_graph(ckpt.model.eval(), torch.zeros(1, *ckpt.spec.input_shape))
    prof = macs_profile(ckpt.model, graph, tuple(ckpt.spec.input_shape), constant=0.01)  # fixed costs dominate
    prof.save(tmp_path / "lat.json")
    best = LatencyModel(graph, prof).reduction({g.id: [0] for g in graph.prunable_groups()})
    out = tmp_path / "p"
    assert main(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-reduction",
                 f"{best - 0.01:.3f}", "--latency-profile", str(tmp_path / "lat.json"), "--latency-rounds", "1",
                 "--compare-macs", "off", "--out", str(out)] + QUIET + FAST) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "of the MACs" in ln]
    assert len(lines) == 1 and lines[0].startswith("secateurs prune: warning: the plan kept for the latency target")
    s = json.loads((out / "summary.json").read_text())
    assert s["latency_reachable"] == pytest.approx(best) and s["flops_reduction"] >= 0.9


def test_a_given_profile_with_a_negative_constant_warns_in_one_line(dense, tmp_path, capsys):
    ckpt = load_checkpoint(dense)
    import torch

    graph = build_channel_graph(ckpt.model.eval(), torch.zeros(1, *ckpt.spec.input_shape))
    prof = macs_profile(ckpt.model, graph, tuple(ckpt.spec.input_shape))
    prof.constant_ms = -0.1 * prof.dense_ms  # as fitted before the constant was held >= 0
    prof.save(tmp_path / "lat.json")
    before = (tmp_path / "lat.json").read_bytes()
    assert main(["prune", "--checkpoint", str(dense), "--data", "digits", "--criterion", "l1", "--latency-reduction",
                 "0.3", "--latency-profile", str(tmp_path / "lat.json"), "--latency-rounds", "1", "--out",
                 str(tmp_path / "p")] + QUIET + FAST) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "negative constant" in ln]
    assert len(lines) == 1 and lines[0].startswith("secateurs prune: warning: the latency profile's fit")
    assert (tmp_path / "lat.json").read_bytes() == before  # the user's file is not rewritten
