"""AmIGO: amortized implicit gradient optimization (``000`` Algorithms 1-3)."""

import numpy as np

from ._base import prox_step
from ._double_loop import _check_count, _DoubleLoopSolver
from ._sampling import BatchStream

#: The linear-system solvers of AmIGO: SGD (AmIGO-GD) or conjugate gradient (AmIGO-CG).
LINEAR_SOLVERS = ("gd", "cg")
#: CG stops early once its residual is below this fraction of ``||d1 F||``.
CG_RTOL = 1e-12
#: Growth of the increments of a warm-started SGD solve of the linear system,
#: relative to its first increment, taken as a divergence. With a stable step
#: they stay of the order of the first one (at most 6 times it in 2500 solves
#: on the tests' logistic problem, where they are minibatch noise); a step too
#: large makes them grow geometrically (by thousands within 20 steps at 20
#: times the default step).
LINEAR_DIVERGENCE_GROWTH = 100.0


def linear_system_step(problem, z, x, v, rhs, l2, step, rows):
    """One SGD step on ``v -> <d11 G v, v> / 2 + <rhs, v>`` from a training batch.

    The gradient ``d11 G_B(z, x) v + rhs`` is taken with the L2 part
    ``l2 = inner_l2(x)`` of ``G`` as a proximal step (see :func:`prox_step`).
    """
    return prox_step(v, problem.inner_hvp(z, x, v, rows) + rhs, l2, step)


def draw_rows(n_rows, size, rng):
    """Rows of a large batch: ``size`` distinct rows, or None (all) if ``size >= n_rows``.

    For the outer batches and the CG batch, each drawn afresh: cutting them
    from passes over the rows (:class:`BatchStream`) would make every other
    batch short when ``size`` is close to ``n_rows``.
    """
    if size >= n_rows:
        return None
    return rng.choice(n_rows, size, replace=False)


def increment_diverged(state, new, old, growth):
    """Track the increments of a linear-system SGD solve; True if they blew up.

    ``state.count`` is the index of the step that went from ``old`` to
    ``new``. The solve diverged if an increment exceeds ``growth`` times the
    first increment of the solve.
    """
    increment = np.linalg.norm(new - old)
    if state.count == 0:
        state.first_increment = increment
    return not increment <= growth * state.first_increment


class CGSolve:
    """Conjugate gradient on ``d11 G_B(z, x) v = -rhs``, one product at a time.

    The batch ``B`` and the point ``(z, x)`` are fixed for the whole solve. The
    preconditioner is diagonal, ``l2 + scale`` with ``l2 = inner_l2(x)`` and
    ``scale`` a bound on the data part of ``d11 G`` (the mean of the
    per-sample smoothness constants): coordinates with huge strengths (up to
    ``exp(15)`` at the default bounds) then have unit curvature instead of
    making the system hopelessly ill-conditioned, while on problems whose L2
    part is uniform the preconditioner is a multiple of the identity and this
    is plain CG.

    Call :meth:`start` once (one Hessian-vector product, for the initial
    residual), then :meth:`iterate` once per iteration (one product each).
    The problem is passed to every call rather than kept: the solve lives in
    the solver state, which the base class copies after every epoch.
    """

    def __init__(self, problem, z, x, rhs, rows, scale):
        self.z, self.x, self.rows = z, x, rows
        self.n_rows = problem.n_train if rows is None else len(rows)
        self.b = -rhs
        self.inverse_diag = 1.0 / (problem.inner_l2(x) + scale)
        self.tol = CG_RTOL * np.linalg.norm(rhs)
        self.done = False

    def _matvec(self, problem, u):
        return problem.inner_hvp(self.z, self.x, u, self.rows)

    def start(self, problem, v):
        """Start from ``v`` (warm start); return it."""
        self.v = v.copy()
        self.r = self.b - self._matvec(problem, self.v)
        self.s = self.inverse_diag * self.r
        self.d = self.s.copy()
        self.rs = self.r @ self.s
        self.done = not np.linalg.norm(self.r) > self.tol
        return self.v

    def iterate(self, problem):
        """Run one CG iteration; return the new ``v``."""
        if self.done:
            return self.v
        Ad = self._matvec(problem, self.d)
        curvature = self.d @ Ad
        if not curvature > 0:  # exact solution reached, or rounding
            self.done = True
            return self.v
        alpha = self.rs / curvature
        self.v = self.v + alpha * self.d
        self.r = self.r - alpha * Ad
        self.s = self.inverse_diag * self.r
        rs = self.r @ self.s
        self.d = self.s + (rs / self.rs) * self.d
        self.rs = rs
        self.done = not np.linalg.norm(self.r) > self.tol
        return self.v


class AmIGO(_DoubleLoopSolver):
    """AmIGO: warm-started inner SGD and a warm-started linear-system solver.

    Each outer iteration (``000`` Algorithm 1, ALGORITHMS.md section 3.3):

    1. ``A_k``: ``T`` SGD steps on ``G(., x)`` from the last ``z`` (warm
       start), each on its own training batch of ``B`` rows, with the L2
       part of ``G`` taken as a proximal step (Algorithm 2);
    2. ``d1 F`` and ``d2 F`` once, on a validation batch ``D_F``, at the
       new ``z``;
    3. ``B_k``: the linear system ``d11 G(z, x) v = -d1 F`` from the last
       ``v`` (warm start), either by ``N`` SGD steps on the quadratic
       ``v -> <d11 G v, v> / 2 + <d1 F, v>``, each Hessian-vector product on
       its own training batch of ``B`` rows (AmIGO-GD, Algorithm 3), or by
       ``N`` iterations of diagonally preconditioned conjugate gradient on
       one training batch of ``B_cg`` rows (AmIGO-CG, see :class:`CGSolve`);
    4. ``d21 G v`` on a training batch ``D_G`` and the projected outer step
       ``x <- P(x - gamma (d2 F + d21 G v))``.

    Cost per outer iteration, in training rows: ``T B`` for the inner
    gradients, ``N B`` (GD) or ``(N + 1) B_cg`` (CG: one more product for
    the initial residual) for the Hessian-vector products, and ``|D_G|``
    for the cross derivative. Every gradient, product and cross derivative
    is a resumable piece (see
    :class:`~skbilevel.solvers._double_loop._DoubleLoopSolver`), so that
    epochs end within one piece of their budget.

    The defaults ``T = N = 20`` (``000`` uses ``T = N = 10`` on 20
    Newsgroups with hand-tuned fixed steps) are what the adaptive outer steps
    of :class:`StochasticSolver` need: they grow as long as consecutive
    estimates agree, and with ``T = N = 10`` the warm-started ``z`` and
    ``v`` fall behind ``x`` once it is large, which biases the estimates
    consistently (so the steps grow further) until ``x`` jumps. On the
    per-feature logistic problem of the tests (six seeds, per-coordinate
    steps), ``T = N = 10`` left the relative gap between 2e-3 and 0.15
    after 1,500 epochs, where ``T = N = 20`` kept every seed below 1e-2
    from 500 epochs on (at most 1.3e-2 after 200). With one outer step for
    all strengths (before they were per coordinate), ``T = N = 10`` left
    one seed in six at 8e-2 from 200 to 1,500 epochs, and ``T = N = 20``
    every seed below 5e-3 from 200 epochs on.

    Parameters
    ----------
    batch_size, outer_step_size, bounds
        See :class:`StochasticSolver`.
    step_size : float or None, default=None
        Step of the inner SGD and of the linear-system SGD (the linear system
        has the conditioning of the inner problem). None sets ``1 / L_B``
        from the per-sample smoothness constants (see
        :meth:`StochasticSolver._default_inner_step`). CG has no step.
    n_inner_steps : int, default=20
        SGD steps on ``G`` per outer iteration (``T``).
    n_linear_steps : int, default=20
        SGD steps (GD) or CG iterations (CG) on the linear system per outer
        iteration (``N``). CG stops earlier if it solves its batch's system
        (residual below ``CG_RTOL * ||d1 F||``).
    linear_solver : {"gd", "cg"}, default="gd"
        AmIGO-GD or AmIGO-CG.
    cg_batch_size : int or None, default=None
        Training rows ``B_cg`` of the CG batch. None takes ``8 * batch_size``
        (at most all of them). Ignored by ``"gd"``.
    outer_batch_size : int or None, default=None
        Rows of ``D_F`` (validation) and of ``D_G`` (training), the batches
        of the outer factors ``d1 F``, ``d2 F`` and ``d21 G``. None takes as
        many rows as the inner and linear-system batches of the outer
        iteration plus one batch, ``(T + 1) B + N B`` (GD) or
        ``(T + 1) B + (N + 1) B_cg`` (CG), at most all of them, as
        :class:`StocBiO`: with one outer update per outer iteration, the
        noise of these factors is not averaged out over many outer steps as
        in single-loop methods, and the adaptive outer step shrinks while
        the estimates are noise (measured with one outer step for all
        strengths: with ``D_F`` and ``D_G`` of ``B = 64`` rows, AmIGO-GD
        stalled between 1.7e-2 and 3.2e-2 of the initial suboptimality on
        the tests' logistic problem, six seeds, where the default reached
        4e-3 in 200 epochs). Validation rows are not counted in epochs.
    """

    name = "amigo"

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 n_inner_steps=20, n_linear_steps=20, linear_solver="gd",
                 cg_batch_size=None, outer_batch_size=None, bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.n_inner_steps = n_inner_steps
        self.n_linear_steps = n_linear_steps
        self.linear_solver = linear_solver
        self.cg_batch_size = cg_batch_size
        self.outer_batch_size = outer_batch_size

    def _check_params(self):
        _check_count(self.batch_size, "batch_size")
        _check_count(self.n_inner_steps, "n_inner_steps")
        _check_count(self.n_linear_steps, "n_linear_steps")
        if self.linear_solver not in LINEAR_SOLVERS:
            raise ValueError(
                f"linear_solver must be one of {LINEAR_SOLVERS}; got {self.linear_solver!r}."
            )
        for value, name in ((self.cg_batch_size, "cg_batch_size"),
                            (self.outer_batch_size, "outer_batch_size")):
            if value is not None:
                _check_count(value, name)

    def _cg_rows(self, problem):
        size = 8 * self.batch_size if self.cg_batch_size is None else self.cg_batch_size
        return min(size, problem.n_train)

    def _linear_rows(self, problem):
        """Training rows of one linear-system solve."""
        if self.linear_solver == "cg":
            return (self.n_linear_steps + 1) * self._cg_rows(problem)
        return self.n_linear_steps * min(self.batch_size, problem.n_train)

    def _outer_rows(self, problem):
        """Rows of the outer batches ``D_F`` and ``D_G`` (before capping)."""
        if self.outer_batch_size is not None:
            return self.outer_batch_size
        batch = min(self.batch_size, problem.n_train)
        return (self.n_inner_steps + 1) * batch + self._linear_rows(problem)

    def _outer_updates_per_epoch(self, problem):
        """Outer updates per epoch: ``n_train`` over the rows of one outer iteration.

        Usually below one: the first outer step is then sized so that one
        update moves the largest coordinate of ``x`` (every one, up to its
        trust radius, with per-coordinate steps) by about as many units as
        the outer iteration lasts epochs (see
        :meth:`StochasticSolver._first_outer_step`).
        """
        rows = (self.n_inner_steps * min(self.batch_size, problem.n_train)
                + self._linear_rows(problem)
                + min(self._outer_rows(problem), problem.n_train))
        return problem.n_train / rows

    def _initialize(self, problem, x, rng):
        self._check_params()
        state = super()._initialize(problem, x, rng)
        state.train = BatchStream(problem.n_train, self.batch_size, rng)
        return state

    def _advance(self, problem, state):
        z, x = state.z, state.x
        if state.stage == "inner":
            rows = state.train.next()
            self._inner_step(problem, state, rows)
            if state.count == self.n_inner_steps:
                self._start_linear_system(problem, state)
            return len(rows), 0.0
        if state.stage == "cg_start":
            n_rows = state.cg.n_rows
            state.v = state.cg.start(problem, state.v)
            state.stage = "linear"
            if state.cg.done:  # already solved on this batch
                self._finish_linear_system(state)
            return n_rows, 0.0
        if state.stage == "linear":
            if self.linear_solver == "cg":
                n_rows = state.cg.n_rows
                state.v = state.cg.iterate(problem)
            else:
                rows = state.train.next()
                n_rows = len(rows)
                v = linear_system_step(problem, z, x, state.v, state.rhs, state.l2,
                                       state.inner_step, rows)
                if increment_diverged(state, v, state.v, LINEAR_DIVERGENCE_GROWTH):
                    self._flag_divergence(state)  # the step is too large
                    return n_rows, 0.0
                state.v = v
            state.count += 1
            if state.count == self.n_linear_steps or (
                self.linear_solver == "cg" and state.cg.done
            ):
                self._finish_linear_system(state)
            return n_rows, 0.0
        # The cross derivative on a training batch, and the outer step.
        rows = draw_rows(problem.n_train, self._outer_rows(problem), state.train.rng)
        direction = state.d2F + problem.inner_cross(z, x, state.v, rows)
        state.stage, state.count = "inner", 0
        n_rows = problem.n_train if rows is None else len(rows)
        return n_rows, self._outer_update(problem, state, direction)

    def _start_linear_system(self, problem, state):
        """Draw the validation batch: ``d1 F`` and ``d2 F`` at the new ``z``."""
        z, x = state.z, state.x
        val_rows = draw_rows(problem.n_val, self._outer_rows(problem), state.train.rng)
        state.rhs = problem.outer_grad(z, x, val_rows)
        state.d2F = problem.outer_grad_x(z, x, val_rows)
        state.l2 = problem.inner_l2(x)
        state.stage, state.count = "linear", 0
        if self.linear_solver == "cg":
            # The initial residual is the first piece of the linear stage.
            scale = problem.sample_smoothness(x).mean()
            rows = draw_rows(problem.n_train, self._cg_rows(problem), state.train.rng)
            state.cg = CGSolve(problem, z, x, state.rhs, rows, scale)
            state.stage = "cg_start"

    def _finish_linear_system(self, state):
        """``v`` is the linear-system estimate: the cross derivative comes next."""
        state.has_estimate = True
        state.stage, state.count = "cross", 0
        state.cg = None
