"""What a newcomer meets first: --help texts and defaults, abbreviations refused, error messages that say what to do."""
import argparse
import json

import pytest

import secateurs.cli.train as train_cli
from secateurs.cli import build_parser, main
from secateurs.models import list_models


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_flag_has_help_and_shows_its_default(command):
    sub = _subparsers()[command]
    assert sub.format_help()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help, f"{command} {name} has no help text"
        shown = action.default is not None and action.default is not False and action.default != ()
        if shown and action.option_strings and not action.required:
            text = sub._get_formatter()._expand_help(action)  # the help text --help prints for this flag
            assert "default" in text.lower(), f"{command} {name}: default {action.default!r} not shown"


def test_abbreviated_flags_are_refused_naming_the_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "mlp", "--data", "digits", "--epoch", "1", "--out", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("secateurs train: error: unrecognized arguments: --epoch 1")
    assert "did you mean --epochs?" in err


def test_a_file_given_as_checkpoint_suggests_its_directory(tmp_path, capsys):
    ckpt = tmp_path / "r20"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        main(["info", "--checkpoint", str(ckpt / "model.safetensors")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "is a file" in err and f"directory {str(ckpt)!r}" in err


def test_info_models_lists_the_zoo(capsys):
    assert main(["info", "--models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_models()) and "fashion-mnist" in out
    with pytest.raises(SystemExit) as e:
        main(["info"])
    assert e.value.code == 2 and "--models" in capsys.readouterr().err


def test_ctrl_c_with_save_state_says_how_to_resume(tmp_path, monkeypatch, capsys):
    state = tmp_path / "state.pt"

    def interrupted(args):
        state.write_bytes(b"saved after epoch 1")  # what the trainer does after every epoch
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "run", interrupted)  # add_parser binds `run` when the parser is built
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "mlp", "--data", "digits", "--save-state", str(state), "--out",
              str(tmp_path / "o")])
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"--resume {str(state)!r}" in err


def test_summary_latency_agrees_with_report_setting(tmp_path, capsys):
    """autoprune's latencies are the interleaved, recorded setting `report` uses by default."""
    dense, pruned = tmp_path / "d", tmp_path / "p"
    assert main(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--quiet", "--threads", "1",
                 "--out", str(dense)]) == 0
    assert main(["autoprune", "--checkpoint", str(dense), "--data", "digits", "--flops-reduction", "0.5",
                 "--batches", "5", "--batch-size", "32", "--quiet", "--out", str(pruned)]) == 0
    s = json.loads((pruned / "summary.json").read_text())
    assert s["latency"]["threads"] == 1 and s["latency"]["batch_size"] == 1
    assert s["latency"]["statistic"].startswith("median of interleaved")
    assert len(s["latency"]["loadavg_1_5_15min"]) == 3
    assert s["latency_ms_b1"] > 0 and s["latency_ms_b1_dense"] > 0
    assert s["source_pruned"] is False and "dense" in capsys.readouterr().out
