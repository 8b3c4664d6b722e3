"""The model zoo: names, shapes on MNIST/CIFAR inputs, traceability, sizes, and outside-factory names."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from secateurs._registry import Registry
from secateurs.models import ModelName, _factory, create_model, list_models, register_model, resolve_model_name

TESTS_DIR = Path(__file__).resolve().parents[1]
ZOO = ["cnn1d", "densenet40", "googlenet", "lenet5", "mlp", "mobilenetv2",
       "resnet110", "resnet20", "resnet32", "resnet56", "vgg16", "vit_tiny"]
IMAGE_MODELS = [n for n in ZOO if n != "cnn1d"]
IMAGE_SHAPES = [(1, 28, 28), (3, 32, 32)]  # MNIST-like and CIFAR-like


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machine is shared; one thread keeps timings predictable and neighbours unharmed.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, shape: tuple[int, ...], num_classes: int = 7, device: str | None = None) -> nn.Module:
    # Generic callers pass the dataset's input size to every model; all zoo factories accept it.
    size = shape[1:] if len(shape) == 3 else shape[1]
    with torch.device(device or "cpu"):
        return create_model(name, num_classes=num_classes, in_channels=shape[0], input_size=size)


def _macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """conv/linear MACs of one sample (FlopCounterMode counts 2 FLOPs per MAC); meta tensors: no compute."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape, device="meta"))
    return counter.get_total_flops() // 2


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- registry -------------------------------------------------------------------------------------------------------

def test_zoo_lists_every_model_sorted():
    assert list_models() == sorted(ZOO)


def test_list_models_pattern():
    assert list_models("resnet*") == ["resnet110", "resnet20", "resnet32", "resnet56"]
    assert list_models("nothing*") == []


def test_unknown_name_lists_known_names():
    with pytest.raises(KeyError) as err:
        create_model("resnet57")
    msg = str(err.value)
    assert "resnet57" in msg and "resnet56" in msg and "vgg16" in msg


@pytest.mark.parametrize(
    "name, parsed",
    [("resnet56", ModelName("zoo", "resnet56")),
     ("pkg.mod:build", ModelName("module", "pkg.mod:build")),
     ("torchvision:resnet18", ModelName("torchvision", "resnet18")),
     ("timm:hf-hub:org/net", ModelName("timm", "hf-hub:org/net"))],
)
def test_resolve_model_name(name, parsed):
    assert resolve_model_name(name) == parsed


@pytest.mark.parametrize("name", ["", ":build", "pkg.mod:"])
def test_malformed_names_are_rejected(name):
    with pytest.raises(ValueError, match="model name"):
        resolve_model_name(name)


def test_register_model(monkeypatch):
    # A private registry so the test's model never leaks into list_models() elsewhere in the session.
    monkeypatch.setattr(_factory, "_MODELS", Registry("model"))

    @register_model("toy")
    def toy(*, num_classes, in_channels, width=4):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * width, num_classes))

    assert list_models() == ["toy"]
    assert create_model("toy", num_classes=3, in_channels=2)(torch.zeros(5, 2, 4)).shape == (5, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy")(toy)
    with pytest.raises(ValueError, match="':'"):
        register_model("my:toy")


# --- every zoo model on both input kinds ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_shape_train_and_eval(name, shape):
    torch.manual_seed(0)
    model = _build(name, shape)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        for train in (True, False):
            y = model.train(train)(x)
            assert y.shape == (2, 7), (name, shape, train)
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("length", [40, 100])
def test_cnn1d_forward_on_mnist1d_and_other_lengths(length):
    model = create_model("cnn1d", num_classes=10, in_channels=1, input_size=length)
    with torch.no_grad():
        for train in (True, False):
            assert model.train(train)(torch.randn(2, 1, length)).shape == (2, 10)
    assert 10_000 <= _params(model) <= 20_000


def test_mlp_input_size_sets_first_layer():
    assert create_model("mlp", in_channels=1).features[0].in_features == 784  # default 28x28
    model = create_model("mlp", in_channels=3, input_size=[32, 32])  # a list, as after a JSON round trip
    assert model.features[0].in_features == 3 * 32 * 32
    assert _params(create_model("mlp", in_channels=1)) == 266_610  # LeNet-300-100
    with pytest.raises(ValueError, match="input_size"):
        create_model("mlp", input_size=(32, 32, 3))


def test_mobilenetv2_width_mult():
    half = create_model("mobilenetv2", width_mult=0.5)
    assert _params(half) < _params(create_model("mobilenetv2"))
    assert half(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="width_mult"):
        create_model("mobilenetv2", width_mult=0)


@pytest.mark.parametrize("name", ZOO)
def test_graph_rules(name):
    """What graph-based pruning relies on: fx-traceable, weights only inside modules, no module called twice,
    no in-place activations, no lazy (shape-less) parameters -- and the trace computes what the model does."""
    shape = (1, 40) if name == "cnn1d" else (1, 28, 28)
    model = _build(name, shape).eval()
    gm = torch.fx.symbolic_trace(model)
    called = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert len(called) == len(set(called)), f"{name}: a module is called more than once"
    assert not [n for n in gm.graph.nodes if n.op == "get_attr"], f"{name}: parameter used outside its module"
    assert not any(getattr(m, "inplace", False) for m in model.modules()), f"{name}: in-place op"
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    x = torch.randn(1, *shape)
    with torch.no_grad():
        assert torch.equal(gm(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")  # deprecated in torch 2.13, still used by older tools
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "densenet40", "googlenet"])
def test_jit_trace(name):
    model = _build(name, (1, 28, 28)).eval()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        assert torch.allclose(traced(x), model(x))


# --- sizes ----------------------------------------------------------------------------------------------------------

def test_cifar_resnet_params_match_the_paper():
    # He et al. 2016 (option-A shortcuts): 0.27M and 0.85M; our 1x1 projections add 1.2k-2.6k.
    assert _params(_build("resnet20", (3, 32, 32), 10, "meta")) == pytest.approx(0.27e6, rel=0.02)
    assert _params(_build("resnet56", (3, 32, 32), 10, "meta")) == pytest.approx(0.85e6, rel=0.02)


def test_resnet56_macs_match_the_literature():
    macs = _macs(_build("resnet56", (3, 32, 32), 10, "meta"), (3, 32, 32))
    # 125.49M with option-A shortcuts; the two 1x1 projections cost 2 x 131,072 more.
    assert macs == 125_485_696 + 2 * 131_072
    assert macs == pytest.approx(125.5e6, rel=0.005)


# Conv+linear MACs and parameter counts at 3x32x32, 10 classes: pins the architectures against silent change.
EXPECTED_CIFAR = {
    "densenet40": (1_059_298, 282_917_328),
    "googlenet": (6_158_346, 1_521_756_160),
    "lenet5": (62_006, 865_320),
    "mlp": (953_010, 952_600),
    "mobilenetv2": (2_236_682, 87_976_448),
    "resnet20": (272_474, 40_813_184),
    "resnet32": (466_906, 69_124_736),
    "resnet56": (855_770, 125_747_840),
    "resnet110": (1_730_714, 253_149_824),
    "vgg16": (14_987_722, 313_463_808),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CIFAR))
def test_cifar_sizes(name):
    model = _build(name, (3, 32, 32), 10, "meta")
    assert (_params(model), _macs(model, (3, 32, 32))) == EXPECTED_CIFAR[name]


# --- outside names --------------------------------------------------------------------------------------------------

@pytest.fixture
def user_path(monkeypatch):
    # Make tests/fixtures importable as a user's module would be: by name, from sys.path.
    monkeypatch.syspath_prepend(str(TESTS_DIR))


@pytest.mark.parametrize("factory", ["tiny", "Builders.tiny"])
def test_module_factory(user_path, factory):
    model = create_model(f"fixtures.user_models:{factory}", num_classes=5, in_channels=1, hidden=4)
    assert model[0].out_channels == 4  # extra kwargs reach the factory
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


@pytest.mark.parametrize(
    "name, error, match",
    [("no_such_pkg_secateurs.nets:build", ImportError, "no_such_pkg_secateurs.nets"),
     ("fixtures.user_models:missing", AttributeError, "fixtures.user_models:missing"),
     ("fixtures.user_models:not_a_module", TypeError, "dict.*nn.Module"),
     ("fixtures.user_models:NOT_CALLABLE", TypeError, "not a callable")],
)
def test_bad_module_factory(user_path, name, error, match):
    with pytest.raises(error, match=match):
        create_model(name)


@pytest.mark.parametrize("lib", ["torchvision", "timm"])
def test_missing_optional_library_says_how_to_install(lib):
    if importlib.util.find_spec(lib) is not None:
        pytest.skip(f"{lib} is installed")
    with pytest.raises(ImportError, match=f"pip install {lib}"):
        create_model(f"{lib}:resnet18")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not installed")
def test_torchvision_model():
    model = create_model("torchvision:resnet18", num_classes=7, input_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="in_channels"):
        create_model("torchvision:resnet18", in_channels=1)


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")
def test_timm_model():
    model = create_model("timm:resnet18", num_classes=7, in_channels=1, input_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
