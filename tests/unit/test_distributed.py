"""The single-process side of secateurs.distributed: every helper is a no-op without a process group, and shutdown()
really tears down a group it finds (a one-rank gloo group here; the two-rank case is test_sparsifier_ddp)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from secateurs import distributed


def test_helpers_without_a_process_group():
    assert not dist.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    t = torch.arange(3.0)
    assert distributed.broadcast_(t) is t and torch.equal(t, torch.arange(3.0))
    distributed.barrier()
    distributed.shutdown()  # nothing to destroy: must not raise
    assert not dist.is_initialized()


def test_shutdown_destroys_the_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        assert dist.is_initialized() and not distributed.is_distributed()
    finally:
        distributed.shutdown()
    assert not dist.is_initialized()
