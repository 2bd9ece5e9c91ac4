"""SOBA: stochastic single-loop bilevel optimization (``003`` section 2.1)."""

import numpy as np

from ..problems import LinearBilevelProblem
from ._base import StochasticSolver, prox_step
from ._linear_kernels import chunk_workspace, single_loop_chunk
from ._sampling import BatchStream

#: With adaptive steps, the largest move of a coordinate of ``x`` in one
#: epoch (log-strength or logit units): the stochastic estimate may spike, and
#: a jump to a bound where the hypergradient vanishes would be a trap.
MAX_EPOCH_MOVE = 1.0

_NO_MEMORY = (np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(0),
              np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)))


class SOBA(StochasticSolver):
    """Single-loop solver updating ``z``, ``v`` and ``x`` from the same point.

    Each iteration draws a training batch ``I`` and a validation batch ``J``
    and steps along the three directions (ALGORITHMS.md section 3.1)::

        z <- z - rho   * d1 G_I(z, x)
        v <- v - rho   * (d11 G_I(z, x) v + d1 F_J(z, x))
        x <- x - gamma * (d21 G_I(z, x) v + d2 F_J(z, x))

    with the L2 part of ``G`` taken as a proximal step. On linear models an
    epoch is one Numba call (margins computed once per row for the three
    directions); on other problems it loops over the problem's oracles.

    The default outer step is diagonal: the first one moves every
    coordinate of ``x`` by about one unit in an epoch (see
    :meth:`StochasticSolver._size_outer_step`), then one factor adapts them
    all. The hypergradients of per-feature strengths can differ by orders
    of magnitude: on IJCNN1 without intercept, a step sized on the largest
    left the others still, and the runs stayed 0.02 to 0.2 above ``h*`` for
    100 epochs; with the diagonal step they reach 1e-2 in 15 to 19 epochs
    (``random_state`` 0 to 4), and as before with the intercept (gap 1e-3
    in 36 to 47 epochs).

    Parameters
    ----------
    batch_size, step_size, outer_step_size, bounds
        See :class:`StochasticSolver`.
    decreasing : bool, default=False
        If True, both steps decay as ``1 / sqrt(t)`` with the iteration ``t``.
    val_batch_size : int or None, default=None
        Rows per validation batch; None: ``batch_size``.
    """

    name = "soba"
    _saga = False
    diagonal_outer_step = True

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 decreasing=False, bounds=(-15.0, 15.0), val_batch_size=None):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.decreasing = decreasing
        self.val_batch_size = val_batch_size

    def _val_batch_size(self, problem):
        """Rows per validation batch."""
        size = self.batch_size if self.val_batch_size is None else self.val_batch_size
        if size < 1:
            raise ValueError(f"val_batch_size must be at least 1; got {size!r}.")
        return size

    def _initialize(self, problem, x, rng):
        state = super()._initialize(problem, x, rng)
        state.train = BatchStream(problem.n_train, self.batch_size, rng)
        state.val = BatchStream(problem.n_val, self._val_batch_size(problem), rng)
        state.t = 0
        # Factor of the inner step on every column of Z and V (kernel epochs).
        if isinstance(problem, LinearBilevelProblem):
            state.column_scale = np.ones(problem.coef_shape[1])
        # How far an epoch may move each coordinate of x when the outer step
        # adapts (SABA replaces it by per-coordinate radii); None: no limit.
        state.radius = MAX_EPOCH_MOVE if self.outer_step_size is None else None
        return state

    def _epoch(self, problem, state):
        if isinstance(problem, LinearBilevelProblem):
            return self._kernel_epoch(problem, state, _NO_MEMORY)
        return self._oracle_epoch(problem, state)

    def _kernel_epoch(self, problem, state, memory):
        """One epoch in chunks of the Numba kernel (one chunk at fixed steps)."""
        n_iter = state.train.batches_per_pass()
        chunk = 1 if self.decreasing else n_iter
        arguments = problem.kernel_arguments()
        lower, upper = self._outer_box(state)
        outer_step = np.broadcast_to(state.outer_step, state.x.shape).astype(float)
        Z, V = problem._matrix(state.z), problem._matrix(state.v)
        workspace = chunk_workspace(Z.shape, state.x.shape[0],
                                    max(state.train.batch_size, state.val.batch_size))
        n_samples = step_sum = 0.0
        for _ in range(0, n_iter, chunk):
            decay = self._decay(state, chunk)
            rows, offsets = state.train.take(chunk)
            val_rows, val_offsets = state.val.take(chunk)
            single_loop_chunk(
                *arguments, Z, V, state.x, rows, offsets, val_rows, val_offsets,
                decay * state.inner_step * state.column_scale,
                decay * outer_step, lower, upper, self._saga, memory, workspace,
            )
            n_samples += len(rows)
            step_sum += chunk * decay * state.outer_step
        return n_samples, step_sum

    def _decay(self, state, n_iter):
        state.t += n_iter
        return 1.0 / np.sqrt(state.t) if self.decreasing else 1.0

    def _oracle_epoch(self, problem, state):
        """One epoch through the problem's oracles, for any problem."""
        n_samples = step_sum = 0.0
        lower, upper = self._outer_box(state)
        for _ in range(state.train.batches_per_pass()):
            decay = self._decay(state, 1)
            rows, val_rows = state.train.next(), state.val.next()
            z, v, x = state.z, state.v, state.x
            dz, hvp, cross = problem.inner_oracles(z, x, v, rows)
            dv = hvp + problem.outer_grad(z, x, val_rows)
            dx = cross + problem.outer_grad_x(z, x, val_rows)
            l2 = problem.inner_l2(x)
            state.z = prox_step(z, dz, l2, decay * state.inner_step)
            state.v = prox_step(v, dv, l2, decay * state.inner_step)
            state.x = np.clip(x - decay * state.outer_step * dx, lower, upper)
            n_samples += len(rows)
            step_sum += decay * state.outer_step
        return n_samples, step_sum
