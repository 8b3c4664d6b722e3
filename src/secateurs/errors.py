"""Exceptions a user can act on. Importing this module imports nothing heavy (the CLI maps them to exit status 2)."""
from __future__ import annotations

__all__ = ["GraphError"]


class GraphError(RuntimeError):
    """The channel graph of a model cannot be built: the tracer failed on a named layer or op, or the group
    enumeration passed its time or size bound. The message is one line and says what to do."""
