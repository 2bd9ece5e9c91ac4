"""SABA: SOBA with SAGA variance reduction on every direction (``003`` section 2.2)."""

import numpy as np

from ..problems import LinearBilevelProblem
from ._base import prox_step
from ._sampling import permutation
from .soba import SOBA

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
    :meth:`StochasticSolver._adapt_coordinate_steps`), with steps of the
    common level of ``x`` until its first turn
    (:meth:`StochasticSolver._move_level`); their sign tests rely on
    the variance reduction, which makes the hypergradient estimate exact at
    a fixed point (SOBA, whose estimates stay noisy, adapts all its steps
    by one factor).

    On linear models the inner step is per block of coefficients: the
    features' and the intercept's, each ``1 / (2 L_B)`` with ``L_B`` the
    expected smoothness of a minibatch of ``B`` of the ``n`` rows in that
    block (Gower et al., 2019, sampling without replacement)::

        L_B = n (B - 1) / (B (n - 1)) L + (n - B) / (B (n - 1)) L_max

    from the block's full-data constant ``L`` (a power iteration for the
    features, see
    :meth:`~skbilevel.problems.LinearBilevelProblem.feature_smoothness`) to
    its largest per-sample one. The factor 2 covers the coupling of the two
    blocks. SOBA's default, the mean per-sample bound over both blocks, is
    up to 20 times smaller (tf-idf rows, or IJCNN1 as stored, where the
    intercept's curvature is 5 to 20 times the features'). Gap 1e-3 on
    IJCNN1 (``benchmarks/bench_solvers.py``, seeds 0 to 2): 13 epochs each
    instead of 18 to 23 (10 to 15 since the level steps).
    SOBA keeps its smaller step, which also keeps the noise of its plain
    estimates low.

    The validation batches are by default the training batch size scaled
    by ``n_val / n_train`` (27 rows on IJCNN1, 16 for hyper-cleaning on
    MNIST), so that an epoch is one pass over each split and every SAGA
    memory is refreshed once per epoch. With the training batch size, an
    epoch visits the validation rows ``n_train / n_val`` times (2.3 on
    IJCNN1), and those visits are 40% of the epoch's time, for the same
    convergence: with ``random_state`` 0 to 9 on IJCNN1, both reach gap
    1e-3 in a median of 12.5 epochs (at most 16 against 18), and MNIST
    hyper-cleaning reaches the same test accuracy (0.910 after 30 epochs)
    with epochs 23% shorter. SOBA keeps the training batch size: its
    estimates have no memory to reduce the noise of smaller batches (on
    IJCNN1 two seeds of three then stay above gap 1e-3 for 100 epochs).

    Parameters
    ----------
    batch_size, step_size, outer_step_size, bounds
        See :class:`StochasticSolver` and :class:`SOBA`. On linear models a
        given ``step_size`` is the features' step; the intercept's is scaled
        by the ratio of the blocks' ``L_B``, as by default. The recovery of
        :class:`StochasticSolver` halves a step that turns out too large.
    val_batch_size : int or None, default=None
        Rows per validation batch; None: ``batch_size * n_val / n_train``,
        rounded, at least 1.
    """

    name = "saba"
    _saga = True
    # The first warm-up epoch fills the memories (not checked), the second
    # must not raise the inner gradient.
    warm_up_epochs = 2
    empty_memory_start = True

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 bounds=(-15.0, 15.0), val_batch_size=None):
        super().__init__(batch_size, step_size, outer_step_size, False, bounds,
                         val_batch_size)

    def _val_batch_size(self, problem):
        if self.val_batch_size is None:
            return max(1, round(self.batch_size * problem.n_val / problem.n_train))
        return super()._val_batch_size(problem)

    def _initialize(self, problem, x, rng):
        state = super()._initialize(problem, x, rng)
        if isinstance(problem, LinearBilevelProblem):
            features = self._batch_smoothness(problem, *problem.feature_smoothness(x))
            intercept = problem.intercept_smoothness(x)
            if intercept is not None:
                intercept = self._batch_smoothness(problem, *intercept)
            if features == 0.0:  # all-zero features: the intercept's constant
                features = intercept or 1.0
            state.feature_smoothness = features
            if intercept is not None:
                state.column_scale[-1] = features / intercept
            K, n_cols = problem.coef_shape
            state.memory = (
                np.zeros((problem.n_train, K)), np.zeros((problem.n_train, K)),
                np.zeros((problem.n_val, K)), np.zeros(problem.n_train),
                np.zeros((K, n_cols)), np.zeros((K, n_cols)), np.zeros((K, n_cols)),
            )
            return state
        state.rng = rng
        state.train_batches = _partition(problem.n_train, self.batch_size, rng)
        state.val_batches = _partition(problem.n_val, self._val_batch_size(problem), rng)
        n_inner, n_outer = problem.n_inner, problem.n_outer
        state.tables = dict(
            grad=_SagaTable(state.train_batches, problem.n_train, n_inner),
            hvp=_SagaTable(state.train_batches, problem.n_train, n_inner),
            cross=_SagaTable(state.train_batches, problem.n_train, n_outer),
            outer_grad=_SagaTable(state.val_batches, problem.n_val, n_inner),
            outer_grad_x=_SagaTable(state.val_batches, problem.n_val, n_outer),
        )
        return state

    def _uses_coordinate_steps(self, problem):
        return True

    def _default_inner_step(self, problem, state):
        if isinstance(problem, LinearBilevelProblem):
            return 0.5 / state.feature_smoothness
        return super()._default_inner_step(problem, state)

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


def _partition(n, batch_size, rng):
    """Cut a random permutation of ``n`` rows into batches (the last shorter)."""
    perm = permutation(n, rng)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
