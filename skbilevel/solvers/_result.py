"""What a solver returns."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BilevelResult:
    """The outcome of a bilevel solver.

    Attributes
    ----------
    x : ndarray of shape (n_outer,)
        The hyperparameters found.
    z : ndarray of shape (n_inner,)
        The inner variable (model coefficients) at ``x``.
    v : ndarray of shape (n_inner,)
        The linear-system variable at ``x``.
    history : dict of ndarray
        One entry per recorded iteration: ``time`` (seconds since the start),
        and solver-specific records such as ``value`` (the outer objective
        ``h``), ``grad_norm`` (norm of the hypergradient estimate), ``epoch``
        or ``inner_iter``.
    n_iter : int
        Number of outer iterations.
    converged : bool
        Whether the stopping criterion was met within the budget.
    message : str
        Why the solver stopped.
    """

    x: np.ndarray
    z: np.ndarray
    v: np.ndarray
    history: dict = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = False
    message: str = ""


class History:
    """Records one row of named values per iteration."""

    def __init__(self):
        self._rows = {}

    def record(self, **values):
        for key, value in values.items():
            self._rows.setdefault(key, []).append(value)

    def as_arrays(self):
        return {key: np.asarray(values) for key, values in self._rows.items()}
