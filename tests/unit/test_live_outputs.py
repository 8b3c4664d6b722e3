"""``live_outputs``: the last layer keeps a weight in every row (no class left without a weight), counts exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from secateurs.schedules import GMP, Cyclical
from secateurs.unstructured import CyclicalSparsifier, magnitude_masks, num_pruned

torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 30)
        self.fc2 = nn.Linear(30, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def _weak_rows(seed=0):
    """fc2 with rows 0-4 a thousand times weaker than rows 5-9: plain ranking at 95 % empties rows 0-4."""
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        net.fc2.weight[:5].mul_(1e-3)
    return net


def _dead_rows(mask: torch.Tensor) -> int:
    return int((mask.reshape(mask.shape[0], -1).sum(1) == 0).sum())


def test_plain_ranking_empties_weak_rows_and_the_guard_keeps_one_each():
    w = _weak_rows().fc2.weight.detach().abs()
    plain = magnitude_masks({"w": w}, 0.95)["w"]          # 300 entries, 15 kept, 10 rows
    guarded = magnitude_masks({"w": w}, 0.95, live_rows=["w"])["w"]
    assert _dead_rows(plain) == 5
    assert _dead_rows(guarded) == 0
    assert int((~plain).sum()) == int((~guarded).sum()) == num_pruned(0.95, 300)
    # each row's kept entry is its largest; the other 5 kept are the largest of the rest
    rows_top = w.argmax(1)
    assert all(bool(guarded[r, rows_top[r]]) for r in range(10))


def test_fewer_kept_than_rows_keeps_the_strongest_rows():
    w = torch.rand(10, 30) + torch.arange(10.0).unsqueeze(1)   # row r's entries in [r, r + 1)
    m = magnitude_masks({"w": w}, 1 - 4 / 300, live_rows=["w"])["w"]
    assert int(m.sum()) == 4
    assert m.sum(1).tolist() == [0] * 6 + [1] * 4        # one in each of the 4 strongest rows


def test_global_scope_guarded_rows_outrank_other_tensors_and_forced_entries_stay_pruned():
    big = torch.full((50, 50), 10.0) + torch.rand(50, 50)
    w = torch.rand(10, 30) * 1e-3
    forced = torch.zeros(10, 30, dtype=torch.bool)
    forced[3] = True                                      # cumulative: row 3 was pruned away before
    masks = magnitude_masks({"big": big, "w": w}, 0.9, "global", forced={"big": torch.zeros_like(big, dtype=torch.bool),
                                                                       "w": forced}, live_rows=["w"])
    assert _dead_rows(masks["w"]) == 1 and int(masks["w"][3].sum()) == 0
    assert int(masks["w"].sum()) == 9
    assert sum(int((~m).sum()) for m in masks.values()) == num_pruned(0.9, 2500 + 300)


@pytest.mark.parametrize("schedule", [GMP(0.95, 40), Cyclical(0.95, 40, cycles=2)])
def test_sparsifier_guards_the_last_layer_only_and_counts_stay_exact(schedule):
    net = _weak_rows()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sp = CyclicalSparsifier(net, schedule, update_every=5, optimizer=opt)
    assert sp.live_rows == ("fc2.weight",)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        x, y = torch.randn(16, 20, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    sp.finalize()
    assert _dead_rows(net.fc2.weight != 0) == 0
    assert int((net.fc2.weight == 0).sum()) == num_pruned(0.95, 300)
    assert int((net.fc1.weight == 0).sum()) == num_pruned(0.95, 600)
    off = _weak_rows()
    CyclicalSparsifier(off, GMP(0.95, 1), live_outputs=False).finalize()
    assert _dead_rows(off.fc2.weight != 0) == 5          # what the guard prevents


def test_no_guard_where_the_last_layer_is_not_pruned_or_rows_cannot_empty():
    assert CyclicalSparsifier(Net(), GMP(0.9, 10), keep_last_dense=True).live_rows == ()
    assert CyclicalSparsifier(Net(), GMP(0.9, 10), exclude=["fc2.*"]).live_rows == ()
    assert CyclicalSparsifier(Net(), GMP(0.5, 10), pattern="2:4").live_rows == ()
    assert CyclicalSparsifier(Net(), GMP(0.9, 10), live_outputs=False).live_rows == ()


def test_state_saved_before_the_guard_existed_resumes_only_without_it():
    state = CyclicalSparsifier(Net(), GMP(0.5, 10), live_outputs=False).state_dict()
    del state["config"]["live_outputs"]                 # as saved by a version without the option
    CyclicalSparsifier(Net(), GMP(0.5, 10), live_outputs=False).load_state_dict(state)
    with pytest.raises(ValueError, match="configuration"):   # the masks would be ranked differently
        CyclicalSparsifier(Net(), GMP(0.5, 10)).load_state_dict(state)
