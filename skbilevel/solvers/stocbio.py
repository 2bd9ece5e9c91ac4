"""stocBiO: stochastic bilevel optimizer with a Neumann-series linear solver (``002``)."""

import numpy as np

from ._base import prox_step
from ._double_loop import (
    DIVERGENCE_GROWTH,
    FIRST_TRUNCATION,
    _DoubleLoopSolver,
    _check_count,
    _quarter_marks,
)
from ._sampling import BatchStream

#: Largest number of Neumann terms under the adaptive default.
MAX_NEUMANN_TERMS = 1000


def neumann_term(problem, z, x, r, l2, step, rows=None):
    """Next term of the Neumann series: ``(r - step * D r) / (1 + step * l2)``.

    ``D`` is the data part of ``d11 G(z, x)`` on ``rows``: the L2 part ``l2``
    is removed from :meth:`inner_hvp` and applied exactly, as in
    :func:`prox_step`.
    """
    return prox_step(r, problem.inner_hvp(z, x, r, rows), l2, step)


def neumann_series(problem, z, x, rhs, step, batches):
    """Approximate ``v = -[d11 G(z, x)]^{-1} rhs`` by a truncated Neumann series.

    ``002`` Algorithm 3, with the library's sign and the L2 part of ``G``
    (``r = inner_l2(x)``) as an exact diagonal preconditioner
    ``P = 1 + step * r``. Writing ``d11 G = D + diag(r)``,
    ``M_j = P^{-1} (I - step D_{B_j})`` and ``r_0 = -P^{-1} rhs``::

        v_Q = step * sum_{q=0}^{Q} M_q ... M_1 r_0

    which tends to ``-(D + diag(r))^{-1} rhs`` as ``Q`` grows when the
    ``M_j`` contract: with ``step`` at most ``1 / L`` of the batches' data
    part, each has norm at most ``1 / (1 + step * min r)``, and the error
    decays like the ``Q``-th power of ``1 - step * mu / (1 + step * r)``
    along the smallest curvature ``mu``. With ``r = 0`` this is Algorithm 3
    exactly (``P = I``). Each term has its own Hessian batch.

    Parameters
    ----------
    problem : BilevelProblem
    z, x : ndarray
        The point where the Hessian is taken.
    rhs : ndarray of shape (n_inner,)
        Usually ``d1 F(z, x)``, on a validation batch.
    step : float
        The scale ``eta``.
    batches : list
        One entry per Hessian term (``Q`` of them): an array of training rows,
        or None for the full batch.

    Returns
    -------
    v : ndarray of shape (n_inner,)
    """
    l2 = problem.inner_l2(x)
    term = -rhs / (1.0 + step * l2)
    total = term.copy()
    for rows in batches:
        term = neumann_term(problem, z, x, term, l2, step, rows)
        total += term
    return step * total


class StocBiO(_DoubleLoopSolver):
    """stocBiO: warm-started inner SGD and a Neumann-series hypergradient.

    Each outer iteration (``002`` Algorithm 2):

    1. ``T`` SGD steps on ``G(., x)`` from the last ``z`` (warm start), each
       on its own batch, with the L2 part of ``G`` taken as a proximal step;
    2. ``d1 F`` and ``d2 F`` on a validation batch ``D_F``;
    3. ``v`` by the truncated Neumann series of :func:`neumann_series`
       (Algorithm 3) with ``Q`` Hessian terms, each on its own batch, and
       scale ``eta``; ``v`` is not warm-started;
    4. ``d21 G v`` on a training batch ``D_G``, and the projected outer step
       ``x <- P(x - gamma (d2 F + d21 G v))``.

    Cost per outer iteration: ``T + Q`` training batches, ``|D_G|`` rows,
    and three more batches under the adaptive ``Q``. It runs as resumable
    pieces of about one batch each (the product on ``D_G`` batch by batch),
    so an epoch may end inside an outer iteration.

    The L2 part of ``G`` is an exact diagonal preconditioner of the series
    (the device of :func:`prox_step`), so that ``eta`` is set by the data
    part of ``G`` alone, as SOBA's step: the plain series needs
    ``eta <= 1 / (L + max r)``, which the strengths ``exp(15)`` reached at
    the default bounds make about ``3e-7``, and then ``Q`` in the millions.

    Parameters
    ----------
    batch_size, outer_step_size, bounds
        See :class:`StochasticSolver`.
    step_size : float or None, default=None
        Step of the inner SGD and scale ``eta`` of the Neumann series (the
        linear system has the conditioning of the inner problem). None sets
        ``1 / L_B`` from the per-sample smoothness constants (see
        :meth:`StochasticSolver._default_inner_step`).
    n_inner_steps : int, default=10
        SGD steps per outer iteration (``T``).
    n_neumann_terms : int or None, default=None
        Hessian terms of the Neumann series (``Q``). None starts at
        ``FIRST_TRUNCATION`` and doubles, up to ``MAX_NEUMANN_TERMS``,
        whenever the truncation error estimated from the last two quarters of
        the series exceeds ``TRUNCATION_RTOL`` times the hypergradient
        estimate (on one more batch, with three cross-derivative products; see
        :meth:`~skbilevel.solvers.aid._DoubleLoopSolver._adapt_truncation`).
        The terms needed grow like ``kappa log(1 / tol)``.
    outer_batch_size : int or None, default=None
        Rows of ``D_F`` (validation) and of ``D_G`` (training), the batches
        of the outer factors ``d1 F``, ``d2 F`` and ``d21 G``. None takes as
        many rows as the inner and Hessian batches of the outer iteration,
        ``(T + Q + 1) * batch_size`` (at most all of them), which at most
        doubles its cost: with one outer update per outer iteration, the
        noise of these factors is not averaged out over many outer steps as
        in single-loop methods, and with sample weights a small ``D_G`` moves
        only its own rows' weights, by ``n_train / |D_G|`` times their
        hypergradient.
    """

    name = "stocbio"

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 n_inner_steps=10, n_neumann_terms=None, outer_batch_size=None,
                 bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.n_inner_steps = n_inner_steps
        self.n_neumann_terms = n_neumann_terms
        self.outer_batch_size = outer_batch_size

    def _initialize(self, problem, x, rng):
        _check_count(self.n_inner_steps, "n_inner_steps")
        if self.n_neumann_terms is not None:
            _check_count(self.n_neumann_terms, "n_neumann_terms", minimum=0)
        if self.outer_batch_size is not None:
            _check_count(self.outer_batch_size, "outer_batch_size")
        state = super()._initialize(problem, x, rng)
        state.rng = rng
        state.train = BatchStream(problem.n_train, self.batch_size, rng)
        state.n_terms = (
            FIRST_TRUNCATION if self.n_neumann_terms is None else self.n_neumann_terms
        )
        return state

    def _outer_updates_per_epoch(self, problem):
        n_terms = MAX_NEUMANN_TERMS if self.n_neumann_terms is None else self.n_neumann_terms
        n_batches = 2 * (self.n_inner_steps + n_terms + 1) + 3  # D_G as large as the rest
        batches_per_epoch = -(-problem.n_train // min(self.batch_size, problem.n_train))
        return max(1.0, batches_per_epoch / n_batches)

    def _outer_rows(self, n_rows, state):
        """Draw the rows of ``D_F`` or ``D_G`` (None: all of them)."""
        size = self.outer_batch_size
        if size is None:
            size = min(self.batch_size, n_rows) * (self.n_inner_steps + state.n_terms + 1)
        if size >= n_rows:
            return None
        return np.sort(state.rng.choice(n_rows, size, replace=False))

    def _advance(self, problem, state):
        if state.stage != "inner" and state.eta != state.inner_step:
            # A divergence halved the steps: the series in progress used the old one.
            self._start_series(problem, state)
        z, x = state.z, state.x
        if state.stage == "inner":
            rows = state.train.next()
            self._inner_step(problem, state, rows)
            if state.count == self.n_inner_steps:
                self._start_series(problem, state)
            return len(rows), 0.0
        if state.stage == "linear":
            rows = state.train.next()
            state.term = neumann_term(problem, z, x, state.term, state.l2, state.eta, rows)
            state.total += state.term
            if np.linalg.norm(state.term) > DIVERGENCE_GROWTH * state.first_norm:
                self._flag_divergence(state)  # eta too large: the series grows
                return len(rows), 0.0
            state.count += 1
            if state.count in _quarter_marks(state.n_terms):
                state.marks.append(state.total.copy())
            if state.count == state.n_terms:
                self._finish_series(problem, state)
            return len(rows), 0.0
        # The cross-derivative product on D_G, one batch at a time.
        rows = state.cross_rows[state.count:state.count + self.batch_size]
        state.cross_sum += len(rows) * problem.inner_cross(z, x, state.v, rows)
        state.count += len(rows)
        if state.count < len(state.cross_rows):
            return len(rows), 0.0
        d2F = problem.outer_grad_x(z, x, state.val_rows)
        direction = state.cross_sum / len(state.cross_rows) + d2F
        n_samples = len(rows)
        if self.n_neumann_terms is None:
            # The truncation estimate, on one more batch: the hypergradient and
            # the contributions of the last two quarters of the series.
            sample = state.train.next()
            half, three_quarters = state.marks
            grad, third, fourth = (
                problem.inner_cross(z, x, state.eta * w, sample)
                for w in (state.total, three_quarters - half, state.total - three_quarters)
            )
            n_samples += 3 * len(sample)
            self._adapt_truncation(state, grad + d2F, (third, fourth), MAX_NEUMANN_TERMS)
        state.stage, state.count = "inner", 0
        return n_samples, self._outer_update(problem, state, direction)

    def _start_series(self, problem, state):
        """Draw ``D_F`` and start the series at ``r_0 = -P^{-1} d1 F``."""
        state.val_rows = self._outer_rows(problem.n_val, state)
        state.eta, state.l2 = state.inner_step, problem.inner_l2(state.x)
        rhs = problem.outer_grad(state.z, state.x, state.val_rows)
        state.term = -rhs / (1.0 + state.eta * state.l2)
        state.total = state.term.copy()
        state.first_norm = np.linalg.norm(state.term)
        state.marks = []
        state.stage, state.count = "linear", 0
        if state.n_terms == 0:
            self._finish_series(problem, state)

    def _finish_series(self, problem, state):
        """Set ``v`` and draw ``D_G``."""
        state.v = state.eta * state.total
        state.has_estimate = True
        rows = self._outer_rows(problem.n_train, state)
        state.cross_rows = np.arange(problem.n_train) if rows is None else rows
        state.cross_sum = np.zeros(problem.n_outer)
        state.stage, state.count = "cross", 0
