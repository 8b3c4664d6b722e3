"""``BatchLoader``: mini-batches straight from in-memory tensors, reproducible and shardable for DDP.

Why not ``torch.utils.data.DataLoader``: the datasets here are a few hundred MB at most and already tensors, so
indexing a whole batch at once is far faster than collating single items, and it keeps all randomness in two
explicitly seeded generators:

* **order**: one permutation per epoch, seeded by ``(seed, epoch)`` only, so every rank computes the same one;
* **augmentation**: seeded by ``(seed, epoch, rank)``, so ranks augment differently but each run is reproducible.

Call :meth:`BatchLoader.set_epoch` before each epoch (as with ``DistributedSampler``); iterating twice without it
repeats the same order and augmentation.

**Sharding** (``world_size > 1``): the epoch's index list is padded by repeating indices from its start until its
length is a multiple of ``world_size``, and rank ``r`` takes ``indices[r::world_size]``. Every rank therefore
sees the same number of samples and batches (no rank waits on a collective that others never reach); the cost is
that up to ``world_size - 1`` samples appear twice per epoch. With ``world_size == 1`` nothing is padded and the
batches are exactly those of an unsharded loader.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from .augment import Augment, get_augment

_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


def _generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of ints; SeedSequence mixes them so nearby keys give unrelated streams."""
    words = [k & 0xFFFF_FFFF_FFFF_FFFF for k in key]  # SeedSequence wants non-negative ints; negative seeds map too
    seed = int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def seeded_batches(x: Tensor, y: Tensor | None = None, *, batch_size: int, seed: int,
                   batches: int | None = None) -> Iterator:
    """The first ``batches`` batches (all when None) of one seeded permutation of ``x`` (and ``y``), un-augmented:
    the fixed calibration sets (Taylor scores, BatchNorm re-estimation) that must not depend on the global RNG.
    Yields ``x`` batches, or ``(x, y)`` pairs when ``y`` is given; lazily, so a whole split costs no copy."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(int(seed)))
    if batches is not None:
        perm = perm[:batches * batch_size]
    for i in range(0, len(perm), batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx] if y is None else (x[idx], y[idx])


class BatchLoader:
    """Iterate ``(x, y)`` batches of ``batch_size`` (the last one smaller unless ``drop_last``).

    ``augment`` is a name from :data:`secateurs.data.augment.AUGMENTATIONS`, a callable ``fn(x, generator)``, or
    ``None``; it is applied to each batch after indexing, so ``x`` itself is never modified.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: str | Augment | None = None,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: must be a positive integer")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size={world_size!r} is invalid: must be a positive integer")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank!r} is invalid: must be an integer in [0, {world_size - 1}]")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = get_augment(augment)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank yields per epoch (before ``drop_last``), padding included."""
        return math.ceil(len(self.x) / self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, in iteration order."""
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=_generator(_ORDER_STREAM, self.seed, self.epoch))
        else:
            order = torch.arange(n)
        if self.world_size == 1:
            return order
        total = self.num_samples * self.world_size
        if total > n > 0:  # repeat from the start (several times if n < world_size)
            order = order.repeat(math.ceil(total / n))[:total]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self.indices()
        gen = _generator(_AUGMENT_STREAM, self.seed, self.epoch, self.rank) if self.augment is not None else None
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(idx)), self.batch_size):
            b = idx[start : start + self.batch_size].to(self.x.device)
            xb = self.x[b]
            if self.augment is not None and gen is not None:
                xb = self.augment(xb, gen)
            yield xb, self.y[b.to(self.y.device)]
