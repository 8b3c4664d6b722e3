"""Distillation loss: its formula, its limits, the teacher left untouched, and its place in the training loop."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from secateurs.data import get_dataset
from secateurs.distill import DistillationLoss, DistillConfig
from secateurs.models import create_model
from secateurs.train import ResumeError, Trainer, TrainConfig, fit, read_train_state

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", seed=0)


def _mlp(data, seed=0, hidden=(300, 100)):
    torch.manual_seed(seed)
    return create_model("mlp", num_classes=data.num_classes, in_channels=1, input_size=8, hidden=hidden)


def test_loss_is_the_documented_mixture():
    torch.manual_seed(0)
    teacher = nn.Linear(5, 4)
    x, y, logits = torch.randn(8, 5), torch.randint(0, 4, (8,)), torch.randn(8, 4)
    w, t = 0.3, 2.5
    got = DistillationLoss(teacher, DistillConfig(weight=w, temperature=t))(logits, x, y)
    p_teacher = F.softmax(teacher(x) / t, 1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(logits / t, 1))).sum(1).mean()
    want = (1 - w) * F.cross_entropy(logits, y) + w * t * t * kl
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_weight_zero_is_cross_entropy_and_a_perfect_student_has_no_soft_loss():
    torch.manual_seed(0)
    teacher = nn.Linear(5, 4)
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    logits = torch.randn(8, 4)
    assert torch.equal(DistillationLoss(teacher, DistillConfig(weight=0.0))(logits, x, y), F.cross_entropy(logits, y))
    with torch.no_grad():
        same = teacher(x)
    assert DistillationLoss(teacher, DistillConfig(weight=1.0))(same, x, y).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kw", [{"weight": -0.1}, {"weight": 1.5}, {"temperature": 0.0}, {"temperature": 1e9},
                                {"weight": float("nan")}])
def test_config_refuses_bad_values(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        DistillConfig(**kw)


def test_training_with_a_teacher_moves_the_student_towards_it_and_leaves_the_teacher(digits):
    teacher = _mlp(digits, seed=1)
    fit(teacher, digits, TrainConfig(epochs=3, lr=0.05, batch_size=64, augment=False), progress=False)
    frozen = copy.deepcopy(teacher.state_dict())

    def gap(student):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(student(digits.test_x), 1), F.log_softmax(teacher(digits.test_x), 1),
                            log_target=True, reduction="batchmean").item()

    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64, augment=False)
    plain, distilled = _mlp(digits, hidden=(16,)), _mlp(digits, hidden=(16,))
    fit(plain, digits, cfg, progress=False)
    fit(distilled, digits, cfg, progress=False,
        criterion=DistillationLoss(teacher, DistillConfig(weight=1.0, temperature=1.0)))
    assert gap(distilled) < gap(plain)
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_resume_refuses_another_distillation_setting(digits, tmp_path):
    teacher = _mlp(digits, seed=1)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64, augment=False)
    state = tmp_path / "state.pt"
    Trainer(_mlp(digits), digits, cfg, progress=False, state_path=state,
            criterion=DistillationLoss(teacher, DistillConfig(weight=0.5))).run()
    again = Trainer(_mlp(digits), digits, cfg, progress=False,
                    criterion=DistillationLoss(teacher, DistillConfig(weight=0.5)))
    again.load_state_dict(read_train_state(state))  # the same setting resumes
    for criterion in (None, DistillationLoss(teacher, DistillConfig(weight=0.9))):
        other = Trainer(_mlp(digits), digits, cfg, progress=False, criterion=criterion)
        with pytest.raises(ResumeError, match="training loss"):
            other.load_state_dict(read_train_state(state))
