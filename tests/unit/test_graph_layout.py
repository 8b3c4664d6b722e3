"""The graph records live apart from the builder (issue 11): the records, the verification, gates and surgery do
not import the builder (``groups.py``) that calls the verification, so there is no import circle, and the records do
not import the tracer."""
import ast
from pathlib import Path

import pytest

import secateurs.graph

GRAPH = Path(secateurs.graph.__file__).parent


def _imports(name: str) -> set[str]:
    tree = ast.parse((GRAPH / f"{name}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("module,forbidden", [
    ("types", {".groups", "._verify", "._tp_adapter", "torch_pruning", ".gates", ".surgery"}),
    ("_verify", {".groups"}),
    ("gates", {".groups", "._tp_adapter"}),
    ("surgery", {".groups"}),
])
def test_module_does_not_import(module, forbidden):
    assert not _imports(module) & forbidden


def test_public_names_still_come_from_secateurs_graph():
    from secateurs.graph import ChannelGraph, ChannelGroup, Member, build_channel_graph
    from secateurs.graph import groups, types

    assert groups.ChannelGraph is types.ChannelGraph is ChannelGraph
    assert (ChannelGroup, Member, build_channel_graph) == (types.ChannelGroup, types.Member, groups.build_channel_graph)
