import pytest
import torch
from torch import nn

from secateurs.flops import count_model, count_params


def test_conv_and_linear_macs_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 5, 4))
    res = count_model(model, (3, 5, 5))
    conv = 3 * 8 * 3 * 3 * 5 * 5  # c_in * c_out * k*k * H_out * W_out
    lin = 8 * 5 * 5 * 4
    assert res.macs == conv + lin
    assert res.flops == 2 * res.macs
    assert res.params == (3 * 8 * 9 + 8) + (200 * 4 + 4)
    by_name = {layer.name: layer for layer in res.layers}
    assert by_name["0"].macs == conv and by_name["0"].output_shape == [8, 5, 5]
    assert by_name["3"].macs == lin and by_name["3"].params == 804


def test_strided_grouped_and_depthwise_conv():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False))
    res = count_model(model, (4, 8, 8))
    grouped = (4 // 2) * 8 * 9 * 4 * 4
    depthwise = 1 * 8 * 9 * 4 * 4
    assert res.macs == grouped + depthwise


def test_functional_matmul_is_seen_and_attributed():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 5))
            self.head = nn.Linear(5, 2)

        def forward(self, x):
            return self.head(torch.relu(x @ self.w))

    res = count_model(M(), (6,))
    assert res.macs == 6 * 5 + 5 * 2
    functional = [layer for layer in res.layers if "functional" in layer.name]
    assert functional and functional[0].macs == 30 and functional[0].params == 30


def test_conv1d_and_batch_independence():
    model = nn.Sequential(nn.Conv1d(1, 4, 5), nn.ReLU())
    assert count_model(model, (1, 40)).macs == 1 * 4 * 5 * 36
    assert count_model(model, (1, 40), batch_size=3).macs == 1 * 4 * 5 * 36


def test_mode_restored_and_bn_stats_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).train()
    before = model[1].running_mean.clone()
    count_model(model, (1, 4, 4))
    assert model.training
    assert torch.equal(model[1].running_mean, before)


def test_shared_parameters_counted_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_params(model) == 20
    assert count_model(model, (4,)).macs == 32  # used twice: computed twice


@pytest.mark.parametrize("bad", [(), (0, 3), (-1,)])
def test_bad_input_shape(bad):
    with pytest.raises(ValueError, match="input_shape"):
        count_model(nn.Linear(2, 2), bad)


def test_table_mentions_definition():
    text = count_model(nn.Linear(3, 2), (3,)).table()
    assert "FLOPs = 2*MACs" in text and "total" in text


def test_latency_restores_threads_and_mode():
    from secateurs.report import latency_ms

    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    before = torch.get_num_threads()
    assert latency_ms(model, (4,), batch_size=2, warmup=1, repeats=2, threads=before + 1) > 0
    assert torch.get_num_threads() == before and model.training
