"""The model zoo: small reference nets for MNIST / MNIST-1D / CIFAR behind one registry.

    create_model("resnet56", num_classes=10, in_channels=3)
    create_model("mlp", num_classes=10, in_channels=1, input_size=28)
    create_model("mypkg.nets:build", num_classes=100)    # any factory taking num_classes=, in_channels=
    list_models("resnet*")

Model files know nothing about training or pruning. Shared rules, which graph tools and pruning code rely on:
every layer with weights is an nn.Module (no functional conv with parameters); no module is called twice in one
forward; activations are ``nn.ReLU()`` without ``inplace``; residual adds and concats are explicit in ``forward``;
no lazy modules (weight shapes are known at construction); every net is ``torch.fx`` / ``torch.jit.trace``-able.
"""
from ._factory import (ModelName, create_model, import_path_without, list_models, register_model,
                       resolve_model_name, untrusted_reason)

# Importing the model files registers them (decorators only; nothing is built at import time).
from . import cnn1d, densenet, googlenet, lenet, mlp, mobilenetv2, resnet, vgg, vit  # noqa: E402,F401  isort: skip

__all__ = ["ModelName", "create_model", "list_models", "register_model", "resolve_model_name", "untrusted_reason",
           "import_path_without"]
