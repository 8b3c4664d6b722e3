"""A model on a CUDA device goes through the same pipeline as on the CPU: the same prunable groups, the same plans,
training and masks on the device. The ``cuda`` cases are skipped without a GPU (CI has none) and run where one is
lent (``benchmarks/gpu.sh``); the ``cpu`` cases keep the same assertions honest in CI. Every new tensor a step
builds must follow the model's device: CPU-only tests cannot see a mask or an index left on the CPU (the graph
check once blocked every group of a CUDA model that way), which is what the ``cuda`` cases are for."""
import copy

import pytest
import torch
from torch import nn

from fixtures.topologies import zoo_case
from secateurs.graph import build_channel_graph

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA device"))]


def _prunable(graph):
    return {g.id: g.width for g in graph.prunable_groups()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_graph_on_the_device_has_the_cpu_groups(name, device):
    model, x, graph, _ = zoo_case(name)
    on_gpu = build_channel_graph(copy.deepcopy(model).to(device), x.to(device))
    assert _prunable(on_gpu) == _prunable(graph) and _prunable(graph)


@pytest.mark.parametrize("device", DEVICES)
def test_prune_on_the_device_gives_the_cpu_plan_and_stays_there(device):
    from secateurs.structured import prune

    model, x, _, _ = zoo_case("resnet20")
    data = [(x, torch.zeros(1, dtype=torch.long))]
    cpu = prune(copy.deepcopy(model), data, flops_reduction=0.5, example_inputs=x, evaluate_test=False,
                progress=False)
    gpu_model = copy.deepcopy(model).to(device)
    gpu = prune(gpu_model, [(x.to(device), torch.zeros(1, dtype=torch.long, device=device))], flops_reduction=0.5,
                example_inputs=x.to(device), evaluate_test=False, progress=False)
    assert gpu.plan.to_dict()["groups"] == cpu.plan.to_dict()["groups"]
    assert all(p.device.type == device for p in gpu_model.parameters())
    assert gpu.summary()["flops_reduction"] == pytest.approx(cpu.summary()["flops_reduction"])


@pytest.mark.parametrize("device", DEVICES)
def test_autoprune_trains_its_gates_on_the_device(device):
    from secateurs.data import get_dataset
    from secateurs.models import create_model
    from secateurs.structured.autobot import AutoBotConfig, autoprune

    data = get_dataset("digits")
    model = create_model("mlp", num_classes=10, in_channels=1, input_size=8).to(device)
    result = autoprune(model, data, 0.5, config=AutoBotConfig(batches=5, batch_size=32), progress=False)
    assert all(p.device.type == device for p in model.parameters())
    assert 0.5 <= result.report.macs_reduction <= 0.5 + 0.02 and 0 <= result.accuracy <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_latency_profile_of_the_model_is_keyed_by_its_device(device):
    from secateurs.cost.latency import LatencyModel
    from secateurs.cost.latency_profile import device_name
    from secateurs.cost.profiling import profile_latency

    model, x, graph, shape = zoo_case("resnet20")
    gpu = copy.deepcopy(model).to(device)
    prof = profile_latency(gpu, build_channel_graph(gpu, x.to(device)), shape, batch_size=8, layer_budget_s=0.02,
                           model_budget_s=0.2, calibration=1, held_out=1)
    assert prof.key["device"] == device_name(device) and prof.key["device"].startswith(device)
    assert LatencyModel(graph, prof).widths == _prunable(graph)


@pytest.mark.parametrize("device", DEVICES)
def test_sparsifier_masks_live_on_the_device_and_counts_are_exact(device):
    from secateurs.schedules import Cyclical
    from secateurs.unstructured import CyclicalSparsifier, num_pruned

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sp = CyclicalSparsifier(net, Cyclical(0.9, 40, cycles=2), update_every=5, optimizer=opt)
    for _ in range(40):
        loss = net(torch.randn(16, 64, device=device)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sp.step()
    sp.finalize()
    assert int((net[0].weight == 0).sum()) == num_pruned(0.9, 64 * 128)
    assert int((net[2].weight == 0).sum()) == num_pruned(0.9, 128 * 10)
