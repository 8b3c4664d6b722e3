import math

import pytest
import torch
from torch import nn

from secateurs.schedules import GMP, Cyclical, OneShot
from secateurs.unstructured import CyclicalSparsifier, Pattern, is_nm, nm_keep, nm_masks


def test_pattern_parse_and_refusals():
    assert Pattern.parse("2:4") == Pattern(2, 4) and Pattern.parse(" 4 : 8 ").sparsity == 0.5
    assert str(Pattern(1, 4)) == "1:4" and Pattern(1, 4).sparsity == 0.75
    for bad in ("2/4", "4:4", "0:4", "5:4", "a:b", ""):
        with pytest.raises(ValueError, match="pattern"):
            Pattern.parse(bad)


def test_nm_keep_is_top_n_of_every_group_along_the_input_dim():
    torch.manual_seed(0)
    w = torch.randn(5, 12)
    keep = nm_keep(w.abs(), Pattern(2, 4))
    groups, kept = w.abs().view(5, 3, 4), keep.view(5, 3, 4)
    assert torch.equal(kept.sum(2), torch.full((5, 3), 2))
    # the kept entries are the largest of their group
    assert bool(((groups * kept).amax(2) >= (groups * ~kept).amax(2)).all())
    assert bool(((groups.masked_fill(~kept, math.inf)).amin(2) >= (groups * ~kept).amax(2)).all())
    assert is_nm(w * keep, Pattern(2, 4)) and not is_nm(w, Pattern(2, 4))


def test_conv_flattened_per_output_channel_and_short_groups():
    w = torch.randn(3, 1, 5, 5)  # 25 per row: six groups of 4 and one of 1 (kept whole)
    keep = nm_keep(w.abs(), Pattern(2, 4))
    assert keep.shape == w.shape
    assert torch.equal(keep.reshape(3, 25).sum(1), torch.full((3,), 13))
    assert bool(keep.reshape(3, 25)[:, 24].all())
    assert is_nm(w * keep, Pattern(2, 4))


def test_schedule_sets_the_fraction_of_patterned_rows():
    torch.manual_seed(0)
    scores = {"a": torch.randn(10, 8).abs(), "b": torch.randn(4, 16).abs()}
    p = Pattern(2, 4)
    for s, rows in ((0.0, 0), (0.25, 5), (0.5, 10)):
        m = nm_masks(scores, s, p)["a"]
        assert int((~m).any(1).sum()) == rows
        assert int((~m).sum()) == 4 * rows  # patterned rows lose exactly half
    # the patterned rows are those where the pattern removes the least magnitude
    m = nm_masks(scores, 0.25, p)["a"]
    cost = (scores["a"] * ~nm_keep(scores["a"], p)).sum(1)
    chosen = (~m).any(1)
    assert cost[chosen].max() <= cost[~chosen].min()
    with pytest.raises(ValueError, match="more than pattern"):
        nm_masks(scores, 0.6, p)


def test_cumulative_rows_stay_patterned():
    torch.manual_seed(0)
    s = {"a": torch.randn(8, 8).abs()}
    p = Pattern(2, 4)
    first = nm_masks(s, 0.5, p)
    again = nm_masks({"a": torch.rand(8, 8)}, 0.125, p, forced={"a": ~first["a"]})
    assert not bool((again["a"] & ~first["a"]).any())  # pruned entries stay pruned


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("schedule", [OneShot(0.5, 40), GMP(0.5, 40), Cyclical(0.5, 40, cycles=2)])
@pytest.mark.parametrize("variant", ["project", "ste"])
def test_sparsifier_with_every_schedule_ends_exactly_n_of_m(schedule, variant):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sp = CyclicalSparsifier(model, schedule, update_every=5, pattern="2:4", variant=variant).attach(opt)
    patterned = []
    for _ in range(40):
        opt.zero_grad()
        model(torch.randn(8, 1, 8, 8)).pow(2).mean().backward()
        opt.step()
        patterned.append(sp.sparsity())
    summary = sp.finalize()
    for t in sp.targets:
        assert is_nm(t.param.detach(), Pattern(2, 4)), t.name
    assert summary["config"]["pattern"] == "2:4"
    # Linear rows (144, 16) are multiples of 4: exactly half; the 3x3 conv rows (9) keep 5 of 9
    assert summary["sparsity_per_layer"]["2.weight"] == 0.5 and summary["sparsity_per_layer"]["0.weight"] == 4 / 9
    if isinstance(schedule, Cyclical):  # the restart makes rows dense again
        assert min(patterned[15:25]) < max(patterned[:20])


def test_sparsifier_refuses_what_the_pattern_cannot_give():
    with pytest.raises(ValueError, match="cannot be reached"):
        CyclicalSparsifier(_model(), GMP(0.7, 40), pattern="2:4")
    with pytest.raises(ValueError, match="scope='layer'"):
        CyclicalSparsifier(_model(), GMP(0.5, 40), pattern="2:4", scope="global")
    with pytest.raises(ValueError, match="restart"):
        CyclicalSparsifier(_model(), Cyclical(0.5, 40, restart_sparsity=0.6), pattern="2:4")


def test_state_dict_round_trip_with_pattern():
    model = _model()
    sp = CyclicalSparsifier(model, GMP(0.5, 40), pattern="2:4")
    state = sp.state_dict()
    other = CyclicalSparsifier(_model(), GMP(0.5, 40), pattern="2:4")
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="configuration"):
        CyclicalSparsifier(_model(), GMP(0.5, 40), pattern="4:8").load_state_dict(state)
    old = dict(state, config={k: v for k, v in state["config"].items() if k not in ("pattern", "live_outputs")})
    # states from before patterns load (they predate live_outputs too: without the guard, as they were ranked)
    CyclicalSparsifier(_model(), GMP(0.5, 40), live_outputs=False).load_state_dict(old)
