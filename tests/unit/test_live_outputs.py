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
    guarded = magnitude_masks({"w": w}, 0.95, live_rows={"w": 0})["w"]
    assert _dead_rows(plain) == 5
    assert _dead_rows(guarded) == 0
    assert int((~plain).sum()) == int((~guarded).sum()) == num_pruned(0.95, 300)
    # each row's kept entry is its largest; the other 5 kept are the largest of the rest
    rows_top = w.argmax(1)
    tops = torch.zeros_like(guarded)
    tops[torch.arange(10), rows_top] = True
    assert bool(guarded[tops].all())
    rest = w.masked_fill(tops, -1.0).flatten()
    assert set(torch.nonzero((guarded & ~tops).flatten()).flatten().tolist()) == set(rest.topk(5).indices.tolist())


def test_fewer_kept_than_rows_keeps_the_strongest_rows():
    w = torch.rand(10, 30) + torch.arange(10.0).unsqueeze(1)   # row r's entries in [r, r + 1)
    m = magnitude_masks({"w": w}, 1 - 4 / 300, live_rows={"w": 0})["w"]
    assert int(m.sum()) == 4
    assert m.sum(1).tolist() == [0] * 6 + [1] * 4        # one in each of the 4 strongest rows


def test_global_scope_guarded_rows_outrank_other_tensors_and_forced_entries_stay_pruned():
    big = torch.full((50, 50), 10.0) + torch.rand(50, 50)
    w = torch.rand(10, 30) * 1e-3
    forced = torch.zeros(10, 30, dtype=torch.bool)
    forced[3] = True                                      # cumulative: row 3 was pruned away before
    forced[4, w[4].argmax()] = True                       # row 4's largest entry was pruned before
    masks = magnitude_masks({"big": big, "w": w}, 0.9, "global",
                            forced={"big": torch.zeros_like(big, dtype=torch.bool), "w": forced},
                            min_kept={"big": 3}, live_rows={"w": 0})
    assert _dead_rows(masks["w"]) == 1 and int(masks["w"][3].sum()) == 0
    assert int(masks["w"].sum()) == 9 and not bool((masks["w"] & forced).any())
    assert bool(masks["w"][4, w[4].masked_fill(forced[4], -1).argmax()])   # its largest allowed entry instead
    assert sum(int((~m).sum()) for m in masks.values()) == num_pruned(0.9, 2500 + 300)


def test_a_transposed_conv_is_guarded_along_its_output_channels():
    w = torch.rand(6, 4, 3, 3)                            # ConvTranspose2d(6, 4, 3): [in, out, kh, kw]
    w[:, :2] *= 1e-3                                      # output channels 0 and 1 are weak
    plain = magnitude_masks({"w": w}, 0.9)["w"]
    guarded = magnitude_masks({"w": w}, 0.9, live_rows={"w": 1})["w"]
    per_out = lambda m: m.transpose(0, 1).reshape(4, -1).sum(1)  # noqa: E731
    assert int((per_out(plain) == 0).sum()) == 2 and int((per_out(guarded) == 0).sum()) == 0
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ConvTranspose2d(6, 4, 3))
    assert CyclicalSparsifier(net, GMP(0.9, 10)).live_rows == {"1.weight": 1}
    grouped = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ConvTranspose2d(6, 4, 3, groups=2))
    assert CyclicalSparsifier(grouped, GMP(0.9, 10)).live_rows == {}


def _train(net, sp, opt, steps=40):
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(16, 20, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    sp.finalize()


@pytest.mark.parametrize("schedule", [GMP(0.95, 40), Cyclical(0.95, 40, cycles=2)])
@pytest.mark.parametrize("live", [True, False])
def test_sparsifier_guards_the_last_layer_only_and_counts_stay_exact(schedule, live):
    net = _weak_rows()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sp = CyclicalSparsifier(net, schedule, update_every=5, optimizer=opt, live_outputs=live)
    assert sp.live_rows == ({"fc2.weight": 0} if live else {})
    _train(net, sp, opt)
    assert _dead_rows(net.fc2.weight != 0) == (0 if live else 5)   # the same training; only the guard differs
    assert int((net.fc2.weight == 0).sum()) == num_pruned(0.95, 300)
    assert int((net.fc1.weight == 0).sum()) == num_pruned(0.95, 600)


def test_no_guard_where_the_last_layer_is_not_pruned_or_rows_cannot_empty():
    for kw in (dict(keep_last_dense=True), dict(exclude=["fc2.*"]), dict(live_outputs=False)):
        sp = CyclicalSparsifier(Net(), GMP(0.9, 10), **kw)
        assert sp.live_rows == {} and sp.config()["live_outputs"] is False
    assert CyclicalSparsifier(Net(), GMP(0.5, 10), pattern="2:4").live_rows == {}
    frozen = Net()
    frozen.fc2.weight.requires_grad_(False)               # not prunable: the last prunable layer is not the last
    assert CyclicalSparsifier(frozen, GMP(0.9, 10)).live_rows == {}


def test_state_saved_before_the_guard_existed_resumes_only_without_it():
    state = CyclicalSparsifier(Net(), GMP(0.5, 10), live_outputs=False).state_dict()
    del state["config"]["live_outputs"]                 # as saved by a version without the option
    CyclicalSparsifier(Net(), GMP(0.5, 10), live_outputs=False).load_state_dict(state)
    old = CyclicalSparsifier(Net(), GMP(0.5, 10), keep_last_dense=True, live_outputs=False).state_dict()
    del old["config"]["live_outputs"]
    CyclicalSparsifier(Net(), GMP(0.5, 10), keep_last_dense=True).load_state_dict(old)  # nothing to guard there
    with pytest.raises(ValueError, match=r"differs in live_outputs \(saved False, here True\).*--live-outputs off"):
        CyclicalSparsifier(Net(), GMP(0.5, 10)).load_state_dict(state)   # the masks would be ranked differently


def test_a_state_saved_with_the_guard_resumes_with_it():
    state = CyclicalSparsifier(Net(), GMP(0.5, 10)).state_dict()
    assert state["config"]["live_outputs"] is True
    CyclicalSparsifier(Net(), GMP(0.5, 10)).load_state_dict(state)
    with pytest.raises(ValueError, match=r"differs in live_outputs \(saved True, here False\)$"):
        CyclicalSparsifier(Net(), GMP(0.5, 10), live_outputs=False).load_state_dict(state)
