"""SOBA: stochastic single-loop bilevel optimization (``003`` section 2.1)."""

import numpy as np

from ._base import StochasticSolver, prox_step
from ._sampling import BatchStream


class SOBA(StochasticSolver):
    """Single-loop solver updating ``z``, ``v`` and ``x`` from the same point.

    Each iteration draws a training batch ``I`` and a validation batch ``J``
    and steps along the three directions (ALGORITHMS.md section 3.1)::

        z <- z - rho   * d1 G_I(z, x)
        v <- v - rho   * (d11 G_I(z, x) v + d1 F_J(z, x))
        x <- x - gamma * (d21 G_I(z, x) v + d2 F_J(z, x))

    with the L2 part of ``G`` taken as a proximal step.

    Parameters
    ----------
    batch_size, step_size, outer_step_size, bounds
        See :class:`StochasticSolver`.
    decreasing : bool, default=False
        If True, both steps decay as ``1 / sqrt(t)`` with the iteration ``t``.
    """

    name = "soba"

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 decreasing=False, bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.decreasing = decreasing

    def _initialize(self, problem, x, rng):
        state = super()._initialize(problem, x, rng)
        state.train = BatchStream(problem.n_train, self.batch_size, rng)
        state.val = BatchStream(problem.n_val, self.batch_size, rng)
        state.t = 0
        return state

    def _epoch(self, problem, state):
        n_samples = step_sum = 0.0
        for _ in range(self._outer_updates_per_epoch(problem)):
            state.t += 1
            decay = 1.0 / np.sqrt(state.t) if self.decreasing else 1.0
            rows, val_rows = state.train.next(), state.val.next()
            z, v, x = state.z, state.v, state.x
            dz, hvp, cross = problem.inner_oracles(z, x, v, rows)
            dv = hvp + problem.outer_grad(z, x, val_rows)
            dx = cross + problem.outer_grad_x(z, x, val_rows)
            l2 = problem.inner_l2(x)
            state.z = prox_step(z, dz, l2, decay * state.inner_step)
            state.v = prox_step(v, dv, l2, decay * state.inner_step)
            state.x = x - decay * state.outer_step * dx
            self._project(state.x)
            n_samples += len(rows)
            step_sum += decay * state.outer_step
        return n_samples, step_sum
