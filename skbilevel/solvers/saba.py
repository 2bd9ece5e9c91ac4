"""SABA: SOBA with SAGA variance reduction on every direction (``003`` section 2.2)."""

import numpy as np

from ..problems import LinearBilevelProblem
from ._base import prox_step
from ._exact import hypergradient
from .soba import SOBA

#: Trust radius of every coordinate of ``x`` in the first adaptive epoch, and
#: the largest one: how far (in log-strength or logit units) an epoch may
#: move a coordinate.
FIRST_RADIUS, MAX_RADIUS = 2.0, 3.0
#: Factors of a radius when a coordinate keeps its direction, or reverses it.
RADIUS_GROWTH, RADIUS_SHRINK = 1.5, 0.5
#: Factors of a coordinate's cap on its radius (starts at ``MAX_RADIUS``) when
#: it keeps its direction, or reverses it: the cap damps the cycles that the
#: lag of ``z`` and ``v`` behind ``x`` would otherwise sustain.
CAP_GROWTH, CAP_SHRINK = 1.05, 0.7


class _SagaTable:
    """SAGA memory of one sum over fixed batches.

    Keeps the last value of every batch's term and their weighted mean, and
    turns a fresh value of batch ``b`` into the variance-reduced estimate
    ``n_batches w_b (fresh - memory_b) + mean``, unbiased when ``b`` is drawn
    uniformly (``w_b`` is the share of the rows in batch ``b``).
    """

    def __init__(self, batches, n_rows, size):
        self.weights = np.array([len(b) / n_rows for b in batches])
        self.memory = np.zeros((len(batches), size))
        self.mean = np.zeros(size)

    def estimate(self, b, fresh):
        diff = fresh - self.memory[b]
        estimate = len(self.weights) * self.weights[b] * diff + self.mean
        self.memory[b] = fresh
        self.mean += self.weights[b] * diff
        return estimate


class SABA(SOBA):
    """Single-loop solver with variance reduction: converges at fixed steps.

    The SOBA iteration (ALGORITHMS.md 3.1) where each stochastic direction is
    replaced by its SAGA estimate (3.2). The L2 part of ``G`` is exact and
    taken as a proximal step; the memories hold the data terms only.

    On linear models the memories are per sample and hold scalars (K-vectors
    for the multinomial loss), O(n + m) memory, and an epoch is one Numba
    call. On any other :class:`~skbilevel.problems.BilevelProblem` the rows
    are cut once into fixed batches and the memory holds one vector per batch
    (``003``: memory per batch).

    Default outer steps are per coordinate, in a trust region (see
    :meth:`_adapt_outer_step`): the hypergradient of a strength ``exp(x_k)``
    scales like ``exp(x_k)`` where the strength is small and like
    ``exp(-x_k)`` where it is large, so one global step cannot suit every
    coordinate; the sign tests of that rule rely on the variance reduction,
    which makes the hypergradient estimate exact at a fixed point (SOBA,
    whose estimates stay noisy, keeps the global step of the base class).

    Parameters
    ----------
    batch_size, step_size, outer_step_size, bounds
        See :class:`StochasticSolver` and :class:`SOBA`: the default inner
        step is SOBA's ``1 / L_B``. The classical SAGA step ``1 / (3 L)`` is
        safe but slow: the data part of the inner problem may be badly
        conditioned once strengths get small (about 2,400 on IJCNN1 at its
        optimum), and the recovery of :class:`StochasticSolver` halves a step
        that turns out too large.
    """

    name = "saba"
    _saga = True
    warm_up_epochs = 2  # a step far too large for SAGA may decrease the gradient once

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, False, bounds)

    def _initialize(self, problem, x, rng):
        state = super()._initialize(problem, x, rng)
        if isinstance(problem, LinearBilevelProblem):
            K, n_cols = problem.coef_shape
            state.memory = (
                np.zeros((problem.n_train, K)), np.zeros((problem.n_train, K)),
                np.zeros((problem.n_val, K)), np.zeros(problem.n_train),
                np.zeros((K, n_cols)), np.zeros((K, n_cols)), np.zeros((K, n_cols)),
            )
            return state
        state.rng = rng
        state.train_batches = _partition(problem.n_train, self.batch_size, rng)
        state.val_batches = _partition(problem.n_val, self.batch_size, rng)
        n_inner, n_outer = problem.n_inner, problem.n_outer
        state.tables = dict(
            grad=_SagaTable(state.train_batches, problem.n_train, n_inner),
            hvp=_SagaTable(state.train_batches, problem.n_train, n_inner),
            cross=_SagaTable(state.train_batches, problem.n_train, n_outer),
            outer_grad=_SagaTable(state.val_batches, problem.n_val, n_inner),
            outer_grad_x=_SagaTable(state.val_batches, problem.n_val, n_outer),
        )
        return state

    def _first_outer_step(self, problem, state):
        """Per-coordinate steps that move each coordinate by ``FIRST_RADIUS`` in an epoch.

        Sized from the full-data hypergradient at the end of the warm-up;
        a coordinate with a zero estimate gets the step of the largest one.
        """
        grad = np.abs(hypergradient(problem, state.z, state.x, state.v))
        largest = grad.max()
        if not np.isfinite(largest) or largest == 0.0:
            grad[:] = 1.0
        grad[grad == 0.0] = largest
        state.radius = np.full(problem.n_outer, FIRST_RADIUS)
        state.cap = np.full(problem.n_outer, MAX_RADIUS)
        state.last_move = np.zeros(problem.n_outer)
        return FIRST_RADIUS / (self._outer_updates_per_epoch(problem) * grad)

    def _adapt_outer_step(self, state, previous):
        """Resize every coordinate's trust radius and step on the signs of its moves.

        An epoch moves each coordinate at most its radius (the box of
        :meth:`_outer_box`). Epoch-level Rprop: a coordinate that moved in
        the same direction as in its last move gets a radius
        ``RADIUS_GROWTH`` times larger (up to its cap), one that reversed
        ``RADIUS_SHRINK`` times smaller. The cap itself shrinks by
        ``CAP_SHRINK`` at each reversal and regrows slowly (``CAP_GROWTH``,
        up to ``MAX_RADIUS``): ``z`` and ``v`` lag behind ``x``, so a
        coordinate overshoots before its estimate turns, and without the cap
        the radius would regrow after every reversal and sustain the swing
        (measured: relative gaps stuck at 3e-2). Then its step is rescaled
        so that, at this epoch's mean hypergradient, the next epoch moves it
        by its radius. The steps thus follow the scale of each coordinate's
        hypergradient, however small it gets near the bounds, and the radii
        shrink where the moves turn into noise. Coordinates that did not
        move (held at a bound) keep their step and radius.
        """
        move = state.x - previous.x
        moved = move != 0.0
        turn = move * state.last_move
        state.cap = np.minimum(MAX_RADIUS, state.cap * _factor(turn, CAP_GROWTH, CAP_SHRINK))
        radius = np.minimum(state.cap, state.radius * _factor(turn, RADIUS_GROWTH, RADIUS_SHRINK))
        scale = np.divide(radius, np.abs(move), out=np.ones_like(radius), where=moved)
        state.outer_step = state.outer_step * scale
        state.radius = radius
        state.last_move = np.where(moved, move, state.last_move)

    def _epoch(self, problem, state):
        if isinstance(problem, LinearBilevelProblem):
            return self._kernel_epoch(problem, state, state.memory)
        return self._oracle_epoch(problem, state)

    def _oracle_epoch(self, problem, state):
        n_samples = step_sum = 0.0
        lower, upper = self._outer_box(state)
        tables = state.tables
        for _ in range(len(state.train_batches)):
            b = state.rng.integers(len(state.train_batches))
            c = state.rng.integers(len(state.val_batches))
            rows, val_rows = state.train_batches[b], state.val_batches[c]
            z, v, x = state.z, state.v, state.x
            l2 = problem.inner_l2(x)
            grad, hvp, cross = problem.inner_oracles(z, x, v, rows)
            dz = tables["grad"].estimate(b, grad - l2 * z) + l2 * z
            dv = (
                tables["hvp"].estimate(b, hvp - l2 * v) + l2 * v
                + tables["outer_grad"].estimate(c, problem.outer_grad(z, x, val_rows))
            )
            dx = tables["cross"].estimate(b, cross) + tables["outer_grad_x"].estimate(
                c, problem.outer_grad_x(z, x, val_rows)
            )
            state.z = prox_step(z, dz, l2, state.inner_step)
            state.v = prox_step(v, dv, l2, state.inner_step)
            state.x = np.clip(x - state.outer_step * dx, lower, upper)
            n_samples += len(rows)
            step_sum += state.outer_step
        return n_samples, step_sum


def _factor(turn, growth, shrink):
    """``growth`` where ``turn > 0``, ``shrink`` where ``turn < 0``, else 1."""
    return np.where(turn > 0, growth, np.where(turn < 0, shrink, 1.0))


def _partition(n, batch_size, rng):
    """Cut a random permutation of ``n`` rows into batches (the last shorter)."""
    perm = rng.permutation(n).astype(np.int64)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
