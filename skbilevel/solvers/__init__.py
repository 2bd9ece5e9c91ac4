"""Bilevel solvers: the deterministic reference and the stochastic methods."""

from ._exact import conjugate_gradient, hypergradient, solve_inner, solve_linear_system
from ._reference import solve_reference
from ._result import BilevelResult

__all__ = [
    "BilevelResult",
    "conjugate_gradient",
    "hypergradient",
    "solve_inner",
    "solve_linear_system",
    "solve_reference",
]
