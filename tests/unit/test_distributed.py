"""The single-process side of secateurs.distributed: every helper is a no-op without a process group; shutdown()
destroys the group init_from_env created and leaves a caller's own group alone (one-rank gloo groups here; the
two-rank barrier is exercised by test_sparsifier_ddp and the torchrun CLI test)."""
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


def test_shutdown_leaves_a_callers_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        assert distributed.init_from_env()  # already initialised: not ours
        distributed.shutdown()
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_shutdown_destroys_the_group_it_created(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.init_from_env()  # one process: no group at all
    real_init = dist.init_process_group
    monkeypatch.setenv("WORLD_SIZE", "2")  # init_from_env reads the torchrun variables; a 1-rank group stands in
    monkeypatch.setattr(dist, "init_process_group", lambda backend: real_init(
        "gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1))
    assert distributed.init_from_env() and dist.is_initialized()
    distributed.shutdown()
    assert not dist.is_initialized()
