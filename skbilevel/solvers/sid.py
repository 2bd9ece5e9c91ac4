"""SID and BSGM: stochastic implicit differentiation without warm start (``004``, ``001``)."""

import math

import numpy as np

from ._base import prox_step
from ._double_loop import DIVERGENCE_GROWTH, _check_count, _DoubleLoopSolver, _quarter_marks
from ._sampling import BatchStream
from .amigo import draw_rows, increment_diverged, linear_system_step

#: The schedules of the numbers of steps: fixed, or ``001``'s ``t = k = J = ceil(c3 (s + 1))``.
SCHEDULES = ("constant", "growing")
#: The step rules of the inner and linear-system solvers (``004`` sections 4-6).
STEP_RULES = ("constant", "decreasing")
#: Steps of each solve in the first outer iteration under the adaptive default.
FIRST_STEPS = 8
#: Largest number of steps of each solve under the adaptive default.
MAX_STEPS = 1000
#: With the adaptive outer step, the first inner solve goes on up to this many
#: steps while it has not halved the inner gradient (see ``SID._advance``).
WARM_UP_STEPS = FIRST_STEPS
#: Growth of the inner iterate, relative to the last completed solve, taken as a
#: divergence (the criterion the base class applies to ``z`` after every epoch).
ITERATE_GROWTH = 1e4


class SID(_DoubleLoopSolver):
    """Stochastic implicit differentiation, restarted at every outer step (SID, BSGM).

    Each outer iteration ``s`` computes the SID hypergradient estimate
    (``004`` Algorithm 1, ``001`` Algorithm 1) from scratch, then takes a
    projected step (``001`` Algorithm 2, BSGM)::

        w_0 = 0,  w_{i+1} = prox step of w_i along d1 G_{I_i}(w_i, x),           i < t
        d1 F, d2 F on a validation batch of J rows, at w_t
        u_0 = 0,  u_{i+1} = prox step of u_i along d11 G_{I'_i}(w_t, x) u_i + d1 F,  i < k
        x <- P_box(x - gamma * (d2 F + d21 G_{J'}(w_t, x) u_k))

    with fresh training batches ``I_i``, ``I'_i`` of ``batch_size`` rows and a
    training batch ``J'`` of ``J`` rows, the L2 part of ``G`` taken as a
    proximal step (see :func:`prox_step`). **No warm start**: every outer
    iteration starts the inner solver from ``w_0 = 0`` and the linear system
    from ``u_0 = 0``, whatever the previous iterations found; only ``x`` is
    carried over (ALGORITHMS.md section 3.4). The state's ``z`` and ``v`` hold
    the last completed solves, for the history, the result, the sizing of
    the first outer step and the base class's divergence checks only (during
    the first outer iteration, ``z`` follows the running iterate, so that
    the warm-up check sees the inner progress; with the adaptive outer step,
    that solve goes on up to ``WARM_UP_STEPS`` steps if it has not halved
    the gradient in ``t``, as the base class's warm-up requires); they are
    never the starting point of a solve.

    Every step and every outer batch is a resumable piece (see
    :class:`~skbilevel.solvers._double_loop._DoubleLoopSolver`), so that
    epochs end within a batch of their budget even when an outer iteration
    lasts many epochs.

    Numbers of steps (``t`` inner, ``k`` linear) and outer batch ``J``:

    - ``schedule="constant"``: ``t = n_inner_steps``, ``k = n_linear_steps``;
      one of them left to None equals the other (the inner problem and the
      linear system have the same conditioning; ``001`` takes ``t = k``).
      Both left to None, they equal an adaptive count: ``FIRST_STEPS`` in
      the first outer iteration, doubled (up to ``MAX_STEPS``) whenever the
      truncation error of the linear solve, estimated from the contributions
      of its last two quarters to the hypergradient (on one more training
      batch), exceeds ``TRUNCATION_RTOL`` times the hypergradient estimate
      (see :meth:`~skbilevel.solvers._double_loop._DoubleLoopSolver._adapt_truncation`,
      which :class:`StocBiO` and :class:`ITD` share).
      The estimate measures the contraction of the iteration, ``q`` such
      that the error decays like ``q^k``: the steps needed grow like
      ``kappa log(1 / tol)``, with ``kappa`` the condition number of the
      inner problem, which the problem does not expose (``min inner_l2(x)``
      bounds its strong convexity from below, but an unpenalized intercept
      makes that bound 0) and which changes with ``x``. Starting small lets
      ``x`` move within the first epochs, while the count grows as the
      hypergradient shrinks near a solution. Under stochastic minibatches
      the constant-step iterates fluctuate at a noise floor that the
      estimate cannot tell from truncation, so the count then grows to
      ``MAX_STEPS`` (about 130 epochs per outer iteration on the tests'
      logistic problem, ``n_train = 1000``), which that problem needs: the
      bias of the estimate is still 30% of the hypergradient after 200 steps
      and 2% after 800 at intermediate ``x``. ``J``: ``outer_batch_size``,
      or None for ``t * batch_size`` rows (at most all of them).
    - ``schedule="growing"`` (BSGM, ``001`` Theorem 16(i)):
      ``t = k = ceil(growth * (s + 1))`` with ``s`` the outer iteration and
      ``J = t * batch_size`` rows; with ``batch_size=1`` this is ``001``'s
      ``t = k = J``, and with minibatches the outer estimates see as many
      rows as each solve. ``n_inner_steps``, ``n_linear_steps`` and
      ``outer_batch_size`` are ignored.

    Inner and linear-system steps, ``eta_i`` at step ``i`` of a solve:

    - ``step_rule="constant"``: ``eta_i = rho``, the step size.
    - ``step_rule="decreasing"``: ``eta_i = rho * beta / (beta + i)``, ``004``
      section 6's ``beta / (gamma + i)`` with ``gamma = beta``
      and ``beta = 2 / (1 - q^2)``, where ``q = 1 / (1 + rho * mu)`` bounds
      the contraction of a step from the strong convexity bound
      ``mu = min inner_l2(x)``; when that bound makes ``beta`` exceed the
      number of steps of the solve (``mu = 0``), ``beta`` is that number, so
      that the steps do decrease within the solve (to about half at its end).
      Steps decaying like ``1 / i`` make the iterates converge instead of
      fluctuating at the noise floor of a constant step (``004`` Theorem
      4.2), at the price of a slower contraction.

    Parameters
    ----------
    batch_size, outer_step_size, bounds
        See :class:`StochasticSolver`.
    step_size : float or None, default=None
        The step ``rho`` of the inner and linear-system solvers (the linear
        system has the conditioning of the inner problem). None sets
        ``1 / L_B`` from the per-sample smoothness constants (see
        :meth:`StochasticSolver._default_inner_step`), or, with full batches
        (``batch_size >= n_train``, where both solvers are gradient
        descent), ``2 / L`` with ``L`` the mean of those constants, which
        bounds the full-batch smoothness: ``004`` section 6's ``2 / (L + mu)``
        with ``mu`` unknown, as :class:`AID`.
    n_inner_steps, n_linear_steps : int or None, default=None
        ``t`` and ``k`` of the constant schedule (above).
    schedule : {"constant", "growing"}, default="constant"
        See above.
    growth : float, default=10.0
        ``c3`` of the growing schedule: about ten steps more per outer
        iteration, so that the solves reach the hundreds of steps that
        ill-conditioned problems need within tens of outer iterations.
    step_rule : {"constant", "decreasing"}, default="constant"
        See above.
    outer_batch_size : int or None, default=None
        ``J`` of the constant schedule.

    Notes
    -----
    One outer iteration lasts many epochs, so this class reports the count
    of outer updates per epoch below one (see
    :meth:`_outer_updates_per_epoch`): the first outer step moves the
    largest coordinate of ``x`` (every one, up to its trust radius, with
    per-coordinate steps) by about as many units as its outer iteration
    lasts epochs.
    """

    name = "sid"

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 n_inner_steps=None, n_linear_steps=None, schedule="constant",
                 growth=10.0, step_rule="constant", outer_batch_size=None,
                 bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.n_inner_steps = n_inner_steps
        self.n_linear_steps = n_linear_steps
        self.schedule = schedule
        self.growth = growth
        self.step_rule = step_rule
        self.outer_batch_size = outer_batch_size

    def _check_params(self):
        _check_count(self.batch_size, "batch_size")
        for value, name in ((self.n_inner_steps, "n_inner_steps"),
                            (self.n_linear_steps, "n_linear_steps"),
                            (self.outer_batch_size, "outer_batch_size")):
            if value is not None:
                _check_count(value, name)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")
        if self.step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}; got {self.step_rule!r}.")
        if isinstance(self.growth, bool) or not (
            isinstance(self.growth, (int, float)) and self.growth > 0
        ):
            raise ValueError(f"growth must be a positive number; got {self.growth!r}.")

    def _default_inner_step(self, problem, state):
        if self.batch_size >= problem.n_train:
            return 2.0 / problem.sample_smoothness(state.x).mean()
        return super()._default_inner_step(problem, state)

    def _initialize(self, problem, x, rng):
        self._check_params()
        state = super()._initialize(problem, x, rng)
        state.train = BatchStream(problem.n_train, self.batch_size, rng)
        state.s = 0  # outer iterations done (with a nonzero step)
        state.n_terms = FIRST_STEPS
        state.plan = None  # (t, k, J) of the outer iteration in progress
        state.rho = None
        return state

    # -- the outer iteration -------------------------------------------------

    def _adaptive(self):
        return self.schedule == "constant" and (
            self.n_inner_steps is None and self.n_linear_steps is None
        )

    def _plan(self, problem, s, n_terms):
        """Return ``(t, k, J)`` for the outer iteration ``s`` (``n_terms``: adaptive count)."""
        batch = min(self.batch_size, problem.n_train)
        if self.schedule == "growing":
            size = math.ceil(self.growth * (s + 1))
            return size, size, size * batch
        t, k = self.n_inner_steps, self.n_linear_steps
        if t is None and k is None:
            t = k = n_terms
        t, k = (k if t is None else t), (t if k is None else k)
        J = t * batch if self.outer_batch_size is None else self.outer_batch_size
        return t, k, J

    def _outer_updates_per_epoch(self, problem, plan=None):
        """Outer updates per epoch: ``n_train`` over the rows of one outer iteration.

        Usually below one: the first outer step is then sized so that one
        update moves the largest coordinate of ``x`` (every one, up to its
        trust radius, with per-coordinate steps) by about as many units as
        the outer iteration lasts epochs (see
        :meth:`StochasticSolver._first_outer_step`). ``plan`` is the
        ``(t, k, J)`` of the outer iteration, by default the first one.
        """
        t, k, J = self._plan(problem, 0, FIRST_STEPS) if plan is None else plan
        batch = min(self.batch_size, problem.n_train)
        check = 2 * batch if self._adaptive() else 0
        return problem.n_train / ((t + k) * batch + min(J, problem.n_train) + check)

    def _start(self, problem, state):
        """Start an outer iteration: its plan, and ``w = 0`` (no warm start)."""
        state.plan = self._plan(problem, state.s, state.n_terms)
        state.w = np.zeros(problem.n_inner)
        state.l2 = problem.inner_l2(state.x)
        state.mu = max(float(state.l2.min()), 0.0) if state.l2.size else 0.0
        state.rho = state.inner_step  # the step of this iteration's solves
        state.stage, state.count = "inner", 0

    def _restart_iteration(self, state):
        state.plan = None  # the next piece starts the iteration (w = 0)

    def _eta(self, state, i, n_steps):
        """The step at step ``i`` of a solve of ``n_steps`` steps."""
        rho = state.rho
        if self.step_rule == "constant":
            return rho
        q = 1.0 / (1.0 + rho * state.mu)
        beta = min(2.0 / (1.0 - q * q) if q < 1.0 else np.inf, float(n_steps))
        return rho * beta / (beta + i)

    def _advance(self, problem, state):
        if state.plan is None or state.rho != state.inner_step:
            # A new outer iteration; or a divergence halved the steps, and the
            # iteration in progress starts again with the new one.
            self._start(problem, state)
        t, k, _ = state.plan
        x = state.x
        if state.stage == "inner":
            rows = state.train.next()
            grad = problem.inner_grad(state.w, x, rows)
            self._record_inner_grad(state, grad)
            state.w = prox_step(state.w, grad, state.l2, self._eta(state, state.count, t))
            state.count += 1
            if not state.has_estimate:
                state.z = state.w  # the warm-up check follows the first solve
            if self._grew(state.w, state.z if state.has_estimate else None):
                self._flag_divergence(state)
            elif state.count >= t and not (
                self.outer_step_size is None and self._warming_up(state)
                and state.count < WARM_UP_STEPS
            ):
                self._start_linear_system(problem, state)
            return len(rows), 0.0
        if state.stage == "linear":
            rows = state.train.next()
            u = linear_system_step(problem, state.w, x, state.u, state.rhs, state.l2,
                                   self._eta(state, state.count, k), rows)
            if increment_diverged(state, u, state.u, DIVERGENCE_GROWTH):
                # From u = 0, a stable step never makes an increment larger
                # than the first one; a step too large makes them grow.
                self._flag_divergence(state)
                return len(rows), 0.0
            state.u = u
            state.count += 1
            if self._adaptive() and state.count in _quarter_marks(k):
                state.marks.append(state.u.copy())
            if state.count >= k:
                state.z, state.v = state.w, state.u
                state.has_estimate = True
                state.stage, state.count = "cross", 0
            return len(rows), 0.0
        return self._finish(problem, state)

    def _grew(self, new, reference):
        """Whether an iterate diverged (compared with the last completed solve)."""
        size = np.linalg.norm(new)
        bound = ITERATE_GROWTH * (1.0 + (0.0 if reference is None else np.linalg.norm(reference)))
        return not size <= bound

    def _start_linear_system(self, problem, state):
        """Draw the validation batch of ``J`` rows; ``d1 F``, ``d2 F`` at ``w_t``; ``u = 0``."""
        _, _, J = state.plan
        val_rows = draw_rows(problem.n_val, J, state.train.rng)
        state.rhs = problem.outer_grad(state.w, state.x, val_rows)
        state.d2F = problem.outer_grad_x(state.w, state.x, val_rows)
        state.u = np.zeros(problem.n_inner)
        state.marks = []
        state.stage, state.count = "linear", 0

    def _finish(self, problem, state):
        """The cross derivative on ``J`` training rows and the outer step."""
        _, _, J = state.plan
        z, x, v = state.z, state.x, state.v
        rows = draw_rows(problem.n_train, J, state.train.rng)
        direction = state.d2F + problem.inner_cross(z, x, v, rows)
        n_samples = problem.n_train if rows is None else len(rows)
        if self._adaptive() and len(state.marks) == 2:
            # Contributions of the last two quarters of the linear solve.
            sample = state.train.next()
            half, three_quarters = state.marks
            third, fourth = (problem.inner_cross(z, x, w, sample)
                             for w in (three_quarters - half, v - three_quarters))
            n_samples += 2 * len(sample)
            self._adapt_truncation(state, direction, (third, fourth), MAX_STEPS)
        step = self._outer_update(problem, state, direction)
        if np.any(step > 0):
            state.s += 1
        state.plan = state.w = state.u = state.marks = None
        state.stage, state.count = "inner", 0
        return n_samples, step

    def _outer_update(self, problem, state, direction):
        """Projected outer step; the first one sized with this iteration's plan.

        As :meth:`StochasticSolver._first_outer_step`, with the updates per
        epoch of the outer iteration that makes the first update.
        """
        if state.size_outer_step:
            updates = self._outer_updates_per_epoch(problem, state.plan)
            state.outer_step = self._size_outer_step(problem, state, updates)
            state.size_outer_step = False
        return super()._outer_update(problem, state, direction)
