"""A diverging run stops at the first non-finite loss, naming the step; the weights it leaves are finite."""
import math

import pytest
import torch

from secateurs.data import get_dataset
from secateurs.errors import DivergedError
from secateurs.models import create_model
from secateurs.train import TrainConfig, Trainer


def test_first_non_finite_loss_stops_the_run_before_the_update(tmp_path):
    data = get_dataset("digits", train_subset=256, val_size=0)
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    config = TrainConfig(epochs=2, lr=1e6, batch_size=32, warmup_epochs=0, evaluate_every_epoch=False)
    trainer = Trainer(model, data, config, progress=False, state_path=tmp_path / "state.pt")
    with pytest.raises(DivergedError) as info:
        trainer.run()
    err = info.value
    assert not math.isfinite(err.loss) and err.step == trainer.global_step and 0 < err.step < trainer.total_steps
    assert err.lr > 0 and f"step {err.step}" in str(err)
    # the step that produced the non-finite loss did not update: every weight is what the previous step left
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / "state.pt").exists()  # diverged inside the first epoch: no state was saved


@pytest.mark.parametrize("field", ["epochs", "weight_decay", "warmup_epochs", "lr"])
def test_config_refuses_infinite_values(field):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: float("inf")})
