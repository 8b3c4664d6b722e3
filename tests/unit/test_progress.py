"""Progress without a terminal: long stages log a line every ~10% or 30 s; latency timed interleaved."""
import io

import torch
from torch import nn

import secateurs._progress as progress_module
from secateurs._progress import Progress, progress_iter, progress_mode


class FakeClock:
    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_mode_follows_the_terminal_and_the_flag():
    assert progress_mode(None, io.StringIO()) == "lines"  # a log file, CI, nohup
    assert progress_mode(True, io.StringIO()) == "bar"
    assert progress_mode(False, io.StringIO()) == "off"


def test_lines_every_tenth_of_the_stage():
    out = io.StringIO()
    bar = Progress(200, "stage", "lines", file=out, clock=FakeClock(1.0))  # 1 s per step: the 10% rule decides
    for _ in range(200):
        bar.update(1, loss=0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and bar.lines == 10
    assert lines[0].startswith("stage: 20/200 (10%), loss 0.5") and "left" in lines[0]
    assert lines[-1].startswith("stage: 200/200 (100%)") and "elapsed" in lines[-1]


def test_lines_at_least_every_30_seconds_when_steps_are_slow_and_many():
    out = io.StringIO()
    bar = Progress(10_000, "slow", "lines", every=None, file=out, clock=FakeClock(1.0), log_done=False)
    for _ in range(300):  # 300 s, 3% of the stage: only the time rule can fire
        bar.update()
    assert bar.lines == 10


def test_fast_stages_are_not_flooded_and_off_is_silent():
    out = io.StringIO()
    bar = Progress(100, "fast", "lines", file=out, clock=FakeClock(0.001))
    for _ in range(100):
        bar.update()
    assert bar.lines == 1  # only the closing line: a 0.1 s stage needs no ten lines
    quiet = io.StringIO()
    for _ in progress_iter(range(50), 50, "off", "off", file=quiet):
        pass
    assert quiet.getvalue() == ""


def test_training_without_terminal_logs_inside_a_long_epoch(monkeypatch, capsys):
    from secateurs.data import get_dataset
    from secateurs.models import create_model
    from secateurs.train import TrainConfig, fit

    monkeypatch.setattr(progress_module, "_monotonic", FakeClock(5.0))  # every step "takes" 5 s
    data = get_dataset("digits", val_size=0)
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    fit(model, data, TrainConfig(epochs=1, batch_size=64, warmup_epochs=0, augment=False))
    err = capsys.readouterr().err.splitlines()  # capsys: stderr is not a terminal
    steps = [l for l in err if l.startswith("epoch 1/1: ")]
    assert len(steps) >= 5 and all("%" in l and "loss" in l for l in steps)
    assert any(l.startswith("epoch 1: loss") for l in err)  # the per-epoch summary line stays


def test_bottleneck_steps_log_lines_without_terminal(monkeypatch, capsys):
    from secateurs.data import get_dataset
    from secateurs.models import create_model
    from secateurs.structured.autobot import AutoBotConfig, autoprune

    monkeypatch.setattr(progress_module, "_monotonic", FakeClock(5.0))
    data = get_dataset("digits")
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    autoprune(model, data, 0.5, config=AutoBotConfig(batches=20, batch_size=32), evaluate_test=False)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("bottlenecks: ")]
    assert len([l for l in lines if "/20 (" in l]) >= 9  # one per 10%
    assert "best step" in lines[-1]


def test_latency_is_timed_interleaved():
    from secateurs.report import interleaved_latency_ms, latency_setting

    calls = []

    class Tagged(nn.Module):
        def __init__(self, tag):
            super().__init__()
            self.tag, self.lin = tag, nn.Linear(4, 2)

        def forward(self, x):
            calls.append(self.tag)
            return self.lin(x)

    a, b = Tagged("a"), Tagged("b")
    a.train()
    b.eval()
    ms = interleaved_latency_ms([a, b], (4,), batch_size=2, warmup=1, repeats=3, threads=1)
    assert len(ms) == 2 and all(m > 0 for m in ms)
    assert calls[:2] == ["a", "b"]  # warm-up round, then blocks of calls in alternating order (test_timing.py)
    assert calls.count("a") > 3 and calls.count("b") > 3
    assert a.training and not b.training  # modes restored
    setting = latency_setting(batch_size=1, threads=1, repeats=20)
    assert setting["threads"] == 1 and setting["batch_size"] == 1 and "loadavg_1_5_15min" in setting
    assert torch.get_num_threads() >= 1
