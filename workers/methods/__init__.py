"""Training methods: `get_method(name)(model, x, y, ctx) -> MethodOutput`, a loss and its decomposition.

A method never touches the optimiser and leaves the model in the mode it found it in.
"""

from workers.methods import clean, fgsm_train, gat, mart, sat, trades, war  # noqa: F401  (registers the methods)
from workers.methods.base import MethodContext, MethodFn, MethodOutput
from workers.methods.registry import get_method, list_methods, register_method

__all__ = ["MethodContext", "MethodFn", "MethodOutput", "get_method", "list_methods", "register_method"]
