"""KeepZeros (unstructured/keep_zeros.py): a sparse model's zeros stay zero through training."""
import torch

from secateurs.data import get_dataset
from secateurs.train import TrainConfig, fit
from secateurs.unstructured import KeepZeros, zero_masks


def test_zeros_stay_zero_and_the_rest_trains():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    with torch.no_grad():
        model[1].weight[:, ::2] = 0  # half of the first layer's weights
    before = model[1].weight.detach().clone()
    masks = zero_masks(model, {"tensors": ["1.weight"]})
    assert set(masks) == {"1.weight"} and int((~masks["1.weight"][1]).sum()) == 16 * 32
    assert zero_masks(model, None) == {}
    data = get_dataset("digits", seed=0)
    fit(model, data, TrainConfig(epochs=1, lr=0.1, batch_size=64, evaluate_every_epoch=False), [KeepZeros(masks)],
        progress=False)
    w = model[1].weight.detach()
    assert bool((w[:, ::2] == 0).all())  # projected back after every step
    assert not torch.equal(w[:, 1::2], before[:, 1::2])  # the kept weights did train
