"""Bilevel solvers: the deterministic reference and the stochastic methods."""

from ._base import DivergenceWarning, SolverState, StochasticSolver, prox_step
from ._exact import conjugate_gradient, hypergradient, solve_inner, solve_linear_system
from ._reference import solve_reference
from ._result import BilevelResult
from ._sampling import BatchStream
from .aid import AID, ITD
from .amigo import AmIGO
from .saba import SABA
from .sid import SID
from .soba import SOBA
from .stocbio import StocBiO

#: The stochastic solvers by name.
SOLVERS = {solver.name: solver for solver in (SOBA, SABA, AmIGO, SID, StocBiO, AID, ITD)}


def get_solver(name, **params):
    """Return the stochastic solver called ``name``, built with ``params``."""
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}; got {name!r}.")
    return SOLVERS[name](**params)


__all__ = [
    "AID",
    "AmIGO",
    "BatchStream",
    "BilevelResult",
    "DivergenceWarning",
    "ITD",
    "SABA",
    "SID",
    "SOBA",
    "SOLVERS",
    "SolverState",
    "StocBiO",
    "StochasticSolver",
    "conjugate_gradient",
    "get_solver",
    "hypergradient",
    "prox_step",
    "solve_inner",
    "solve_linear_system",
    "solve_reference",
]
