"""``secateurs.graph.explain`` (the public name) lives in ``secateurs.explanation``, above the graph and the cost
models it reads; this module only re-exports it."""
from ..explanation import Explanation, GroupInfo, explain

__all__ = ["Explanation", "GroupInfo", "explain"]
