import math

import pytest
import torch

from secateurs.data import get_dataset
from secateurs.models import create_model
from secateurs.train import Callback, TrainConfig, evaluate, fit, lr_factor


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", seed=0)


def _mlp(data):
    torch.manual_seed(0)
    return create_model("mlp", num_classes=data.num_classes, in_channels=1, input_size=8)


def test_training_learns_and_reports(digits):
    model = _mlp(digits)
    before = evaluate(model, digits.test_x, digits.test_y)["accuracy"]
    res = fit(model, digits, TrainConfig(epochs=3, lr=0.05, batch_size=64, augment=False), progress=False)
    assert res.accuracy > 0.85 > before + 0.3
    assert len(res.history) == 3 and res.steps == 3 * (len(digits.train_x) // 64)
    assert res.epochs == pytest.approx(3.0) and res.elapsed_s > 0 and res.train_images_per_s > 0
    assert {"train_loss", "val_accuracy", "lr", "images_per_s"} <= set(res.history[0])


def test_same_seed_same_weights_other_seed_differs(digits):
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=32, seed=3, augment=False)
    a, b, c = _mlp(digits), _mlp(digits), _mlp(digits)
    fit(a, digits, cfg, progress=False)
    fit(b, digits, cfg, progress=False)
    fit(c, digits, TrainConfig(epochs=1, lr=0.05, batch_size=32, seed=4, augment=False), progress=False)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_callbacks_see_every_step_and_the_optimizer(digits):
    events = []

    class Spy(Callback):
        def on_train_begin(self, trainer):
            events.append(("begin", trainer.total_steps, type(trainer.optimizer).__name__))

        def on_step_end(self, trainer, step, loss):
            assert trainer.global_step == step + 1 and math.isfinite(loss)
            events.append(("step", step))

        def on_epoch_end(self, trainer, epoch, metrics):
            events.append(("epoch", epoch, metrics["step"]))

        def on_train_end(self, trainer):
            events.append(("end",))

    fit(_mlp(digits), digits, TrainConfig(epochs=2, batch_size=256, max_steps=7, optimizer="adam", lr=1e-3),
        [Spy()], progress=False)
    assert events[0] == ("begin", 7, "Adam")
    assert [e[1] for e in events if e[0] == "step"] == list(range(7))
    assert [e for e in events if e[0] == "epoch"] == [("epoch", 0, 5), ("epoch", 1, 7)]
    assert events[-1] == ("end",)


def test_lr_schedule_warmup_then_cosine_to_zero():
    vals = [lr_factor(s, 100, 10) for s in range(100)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert vals[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(vals[10:], vals[11:]))
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("lr", -1.0), ("batch_size", 0), ("momentum", 1.0),
                                         ("optimizer", "lbfgs"), ("label_smoothing", 1.0)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_batch_larger_than_data_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="batch_size"):
        fit(_mlp(digits), digits, TrainConfig(batch_size=100_000), progress=False)


def test_evaluate_restores_mode(digits):
    model = _mlp(digits).train()
    out = evaluate(model, digits.test_x, digits.test_y)
    assert model.training and 0 <= out["accuracy"] <= 1


def test_fit_restores_global_rng_and_model_mode(digits):
    model = _mlp(digits).eval()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, digits, TrainConfig(epochs=1, max_steps=3, batch_size=64, seed=7), progress=False)
    assert torch.equal(torch.rand(3), expected)
    assert not model.training


# ---------------------------------------------------------------------------------------------- resume
class _CrashAt(Callback):
    """Raises KeyboardInterrupt after optimizer step ``at`` (None: never), like a killed job."""

    def __init__(self, at=None):
        self.at = at

    def on_step_end(self, trainer, step, loss):
        if step == self.at:
            raise KeyboardInterrupt


def _dropout_net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                               torch.nn.Linear(32, 10))


def _callbacks(with_sparsifier, crash_at=None):
    from secateurs.schedules import Cyclical
    from secateurs.unstructured import CyclicalSparsifier, SparsifierCallback

    cbs = [_CrashAt(crash_at)]
    if with_sparsifier:
        cbs.insert(0, SparsifierCallback(lambda m, total: CyclicalSparsifier(
            m, Cyclical(0.8, total, cycles=3), update_every=4, variant=with_sparsifier), bn_batches=0))
    return cbs


@pytest.mark.parametrize("with_sparsifier", [False, "project", "ste"])
def test_interrupted_then_resumed_run_is_bit_identical(digits, tmp_path, with_sparsifier):
    from secateurs.train import Trainer, read_train_state

    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=64, seed=5)
    ref_model = _dropout_net(0)
    ref_trainer = Trainer(ref_model, digits, cfg, _callbacks(with_sparsifier), progress=False)
    ref = ref_trainer.run()

    state_file = tmp_path / "state.pt"
    crashed = Trainer(_dropout_net(0), digits, cfg, _callbacks(with_sparsifier, crash_at=ref_trainer.steps_per_epoch
                                                               * 2 + 3), progress=False, state_path=state_file)
    with pytest.raises(KeyboardInterrupt):
        crashed.run()
    state = read_train_state(state_file)
    assert state["epoch"] == 2 and state["global_step"] == 2 * ref_trainer.steps_per_epoch

    model = _dropout_net(1)  # another init: everything must come from the state file
    resumed = Trainer(model, digits, cfg, _callbacks(with_sparsifier), progress=False, state_path=state_file)
    resumed.load_state_dict(state)
    res = resumed.run()
    want, got = ref_model.state_dict(), model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref.history]
    assert res.steps == ref.steps and res.accuracy == ref.accuracy
    assert read_train_state(state_file)["epoch"] == 3  # still saved after every epoch
    if with_sparsifier:
        assert resumed.callbacks[0].summary["sparsity"] == ref_trainer.callbacks[0].summary["sparsity"]
        assert resumed.callbacks[0].sparsifier.history == ref_trainer.callbacks[0].sparsifier.history


def test_state_dict_is_a_snapshot(digits):
    from secateurs.train import Trainer

    trainer = Trainer(_dropout_net(0), digits, TrainConfig(epochs=2, lr=0.05, batch_size=64), progress=False)
    trainer.run()
    snap = trainer.state_dict()
    momentum = [v["momentum_buffer"].clone() for v in snap["optimizer"]["state"].values()]
    for group in trainer.optimizer.state.values():  # live buffers keep changing after a snapshot
        group["momentum_buffer"].add_(1.0)
    assert all(torch.equal(a, v["momentum_buffer"]) for a, v in zip(momentum, snap["optimizer"]["state"].values()))


def test_sparsifier_callback_refuses_another_lr_restart_on_resume(digits, tmp_path):
    from secateurs.schedules import Cyclical
    from secateurs.train import Trainer, read_train_state
    from secateurs.unstructured import CyclicalSparsifier, SparsifierCallback

    def cb(lr_restart):
        return SparsifierCallback(lambda m, total: CyclicalSparsifier(m, Cyclical(0.5, total, cycles=2)),
                                  bn_batches=0, lr_restart=lr_restart)

    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64)
    Trainer(_dropout_net(0), digits, cfg, [cb(False)], progress=False, state_path=tmp_path / "s.pt").run()
    again = Trainer(_dropout_net(0), digits, cfg, [cb(True)], progress=False)
    again.load_state_dict(read_train_state(tmp_path / "s.pt"))
    with pytest.raises(ValueError, match="lr_restart: saved False, now True"):
        again.run()


def test_resume_refuses_another_configuration_or_file(digits, tmp_path):
    from secateurs.train import Trainer, read_train_state

    state_file = tmp_path / "state.pt"
    fit(_dropout_net(0), digits, TrainConfig(epochs=1, lr=0.05, batch_size=64), progress=False)
    assert not any(tmp_path.iterdir())  # no state_path: nothing written
    Trainer(_dropout_net(0), digits, TrainConfig(epochs=1, lr=0.05, batch_size=64), progress=False,
            state_path=state_file).run()
    state = read_train_state(state_file)
    other = Trainer(_dropout_net(0), digits, TrainConfig(epochs=1, lr=0.1, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="lr: saved 0.05, now 0.1"):
        other.load_state_dict(state)
    wrong = Trainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), digits,
                    TrainConfig(epochs=1, lr=0.05, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="do not fit this model"):
        wrong.load_state_dict(state)
    extra = Trainer(_dropout_net(0), digits, TrainConfig(epochs=1, lr=0.05, batch_size=64), [_CrashAt()],
                    progress=False)
    extra.load_state_dict(state)
    with pytest.raises(ValueError, match="saved run had 0 callbacks, this one has 1"):
        extra.run()
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable training state"):
        read_train_state(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a secateurs training state"):
        read_train_state(tmp_path / "other.pt")


def test_sgd_settings_do_not_block_resuming_an_adam_run(digits, tmp_path):
    # momentum / nesterov do nothing under adam, so a state saved with others (the CLI used to accept them there,
    # and now refuses them) must resume without them; under sgd they still have to match
    from secateurs.train import Trainer, read_train_state

    adam = dict(epochs=1, lr=1e-3, batch_size=64, optimizer="adam")
    Trainer(_dropout_net(0), digits, TrainConfig(**adam, momentum=0.5, nesterov=False), progress=False,
            state_path=tmp_path / "adam.pt").run()
    Trainer(_dropout_net(0), digits, TrainConfig(**adam), progress=False).load_state_dict(
        read_train_state(tmp_path / "adam.pt"))
    with pytest.raises(ValueError, match="optimizer: saved 'adam', now 'sgd'"):
        Trainer(_dropout_net(0), digits, TrainConfig(**{**adam, "optimizer": "sgd"}, momentum=0.5, nesterov=False),
                progress=False).load_state_dict(read_train_state(tmp_path / "adam.pt"))
    sgd = dict(epochs=1, lr=0.05, batch_size=64)
    Trainer(_dropout_net(0), digits, TrainConfig(**sgd, momentum=0.5), progress=False,
            state_path=tmp_path / "sgd.pt").run()
    with pytest.raises(ValueError, match="momentum: saved 0.5, now 0.9"):
        Trainer(_dropout_net(0), digits, TrainConfig(**sgd), progress=False).load_state_dict(
            read_train_state(tmp_path / "sgd.pt"))
