"""Failures inside Torch-Pruning become a workaround or one line naming the op, within bounds (issue 10.2)."""
import copy

import pytest
import torch
import torch_pruning as tp

from fixtures.real_world import make
from fixtures.topologies import make as make_topology
from secateurs.cli import main
from secateurs.errors import GraphError
from secateurs.graph import GraphLimits, build_channel_graph
from secateurs.structured import apply_plan, channel_scores, select_channels


def test_shufflenet_zero_division_is_worked_around_and_the_rest_prunes(monkeypatch):
    """The guard, with our own channel-shuffle mapping switched off (it replaces the mapping that fails)."""
    from secateurs.graph import _tp_adapter

    monkeypatch.setattr(_tp_adapter, "_find_shuffles", lambda dg: ({}, set()))
    model, x = make("shufflenet")
    with pytest.raises(ZeroDivisionError):  # the bug this guards against (Torch-Pruning 1.6 on ShuffleNetV2)
        tp.DependencyGraph().build_dependency(copy.deepcopy(model), x[:1])
    graph = build_channel_graph(model, x[:1])
    notes = dict(graph.unprunable)
    broken = [op for op, why in notes.items() if "ZeroDivisionError" in why]
    assert broken, notes
    blocked = [g for g in graph.groups if "ZeroDivisionError" in (g.reason or "")]
    assert blocked and all(not g.prunable for g in blocked)
    assert len(graph.prunable_groups()) >= 3
    sel = select_channels(graph, channel_scores(model, graph, "l1"), 0.2)
    pruned = copy.deepcopy(model)
    report = apply_plan(pruned, sel.plan, x, graph=graph)  # verified: MACs, params, masked == pruned
    assert report.macs_reduction > 0.15


def test_limits_stop_the_enumeration_with_one_line():
    model, x = make_topology("residual")
    with pytest.raises(GraphError, match=r"more than 50 channel indices \(at layer 'stem.0'.*--graph-max-indices"):
        build_channel_graph(model, x, limits=GraphLimits(indices=50))
    with pytest.raises(GraphError, match=r"longer than 1e-09 s.*--graph-time-limit"):
        build_channel_graph(model, x, limits=GraphLimits(seconds=1e-9))
    assert build_channel_graph(model, x, limits=GraphLimits(seconds=None, indices=None)).prunable_groups()
    with pytest.raises(ValueError, match="GraphLimits.indices"):
        GraphLimits(indices=0)


def test_the_index_bound_acts_inside_one_group():
    """An index mapping that multiplies indices (Swin/ShuffleNet-like) is stopped while the group is enumerated, not
    after: conv -> flatten -> linear maps 8 channels to 8 x 16 features."""
    model, x = make_topology("flatten_linear")
    with pytest.raises(GraphError, match="channel indices") as exc:
        build_channel_graph(model, x, limits=GraphLimits(indices=60))
    tb, names = exc.value.__traceback__, []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_qualname)
        tb = tb.tb_next
    assert "DependencyGraph.get_pruning_group" in names and "_CountedMapping.__call__" in names


def test_a_trace_failure_names_the_op(monkeypatch):
    real = tp.dependency.index_mapping.update_concat_index_mapping

    def boom(graph, node):
        if node.type == tp.ops.OPTYPE.CONCAT:
            raise IndexError("list index out of range")
        return real(graph, node)

    monkeypatch.setattr(tp.dependency.index_mapping, "update_concat_index_mapping", boom)
    model, x = make_topology("concat")
    graph = build_channel_graph(model, x)  # the concat's groups are blocked, naming the op; nothing crashes
    reasons = " ".join(g.reason or "" for g in graph.groups)
    assert "cannot map channels through _ConcatOp" in reasons and "IndexError" in reasons

    def fail(*a, **k):
        raise ZeroDivisionError("integer division or modulo by zero")

    monkeypatch.setattr(tp.DependencyGraph, "_build_dependency", fail)
    with pytest.raises(GraphError, match=r"^channel graph: Torch-Pruning cannot trace the model \(ZeroDivisionError"):
        build_channel_graph(model, x)


def test_one_failing_group_is_blocked_and_the_others_survive(monkeypatch):
    real = tp.DependencyGraph.get_pruning_group
    model, x = make_topology("residual")

    def flaky(self, module, fn, idxs):
        if self._module2name.get(module) == "b1.0.0":
            raise KeyError("no handler")
        return real(self, module, fn, idxs)

    monkeypatch.setattr(tp.DependencyGraph, "get_pruning_group", flaky)
    graph = build_channel_graph(model, x)
    assert not graph["b1.0.0:out"].prunable and "Torch-Pruning failed on it (KeyError" in graph["b1.0.0:out"].reason
    assert graph.prunable_groups()


def test_cli_maps_graph_errors_to_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explain", "--model", "resnet20", "--input-shape", "3,32,32", "--graph-max-indices", "100"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--graph-max-indices" in err[0] and "Traceback" not in err[0]
