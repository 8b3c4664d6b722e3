"""Batch augmentations in plain torch: one call per batch, no per-image Python loop, no PIL.

Each augmentation is ``fn(x, generator) -> x`` on a normalised (N, C, H, W) batch. All randomness is drawn on the
CPU from the given ``torch.Generator`` (then moved to ``x.device``), so a seeded generator reproduces the same
augmentation on any device.

Padding is zeros *in normalised space*, i.e. the per-channel mean colour, rather than black as torchvision pads
raw pixels; the difference is a border of mean-grey instead of black and does not matter for accuracy.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

Augment = Callable[[Tensor, torch.Generator], Tensor]


def random_crop(x: Tensor, generator: torch.Generator, padding: int) -> Tensor:
    """Pad every side by ``padding`` and crop back to the input size at a random offset per image."""
    if x.dim() != 4:
        raise ValueError(f"random_crop needs (N, C, H, W) images, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if padding == 0 or n == 0:
        return x.clone()
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h): source row of each output row
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def crop_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """The standard CIFAR recipe: random crop with 4-pixel padding, then horizontal flip."""
    return random_hflip(random_crop(x, generator, padding=4), generator)


#: Name -> augmentation. "crop" has no flip: mirrored digits and some garments change meaning or become unlike
#: anything in the test set.
AUGMENTATIONS: Mapping[str, Augment] = MappingProxyType({
    "crop_flip": crop_flip,
    "crop": functools.partial(random_crop, padding=2),
})


def get_augment(augment: str | Augment | None) -> Augment | None:
    """Resolve a name (or pass through a callable / ``None``); unknown names list the known ones."""
    if augment is None or callable(augment):
        return augment
    try:
        return AUGMENTATIONS[augment]
    except KeyError:
        raise ValueError(f"augment={augment!r} is unknown; known: {', '.join(sorted(AUGMENTATIONS))}") from None
