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
