"""Shared machinery of the double-loop solvers (stocBiO, AID, ITD).

One outer iteration of these methods costs many oracle calls, more than the
one epoch the base class runs at a time: they are written as resumable
pieces (:class:`_DoubleLoopSolver`).
"""

import numpy as np

from ..problems import GroupedL2
from ._base import StochasticSolver, prox_step

#: Truncation length (Neumann terms, unrolled steps) of the first outer iteration.
FIRST_TRUNCATION = 16
#: Growth of the terms of a truncated series (stocBiO) or of the adjoint (ITD)
#: taken as a divergence: with valid steps every factor has norm at most 1.
DIVERGENCE_GROWTH = 10.0
#: Largest estimated truncation error of a hypergradient, relative to its
#: norm, before the truncation length doubles.
TRUNCATION_RTOL = 0.5


class _DoubleLoopSolver(StochasticSolver):
    """A solver whose outer iteration is a sequence of many oracle calls.

    :class:`StochasticSolver` runs about one epoch per call to ``_epoch``,
    while an outer iteration of a double-loop method (inner steps, then a
    linear-system solve, then the outer step) may cost many epochs.
    Subclasses implement :meth:`_advance`, one resumable piece of an outer
    iteration that keeps its progress in the state; :meth:`_epoch` calls it
    until the inner-sample count reaches the next multiple of ``n_train``, so
    that budgets, history and callbacks keep the granularity of one epoch
    (up to one piece) whatever an outer iteration costs. Many epochs then
    make no outer step.

    The first outer step is sized as the base class does, but at the first
    outer update, from the first complete estimate of ``v``, which the
    warm-up epoch may not reach. The outer steps are per coordinate when
    ``x`` holds log L2 strengths, and one for all otherwise (see
    :meth:`_uses_coordinate_steps`).

    Truncated solvers (stocBiO's Neumann series, ITD's unrolling) keep their
    truncation length in ``state.n_terms`` and adapt it with
    :meth:`_adapt_truncation`.

    A piece that sees its series grow (a step too large) calls
    :meth:`_flag_divergence`, which ends the epoch with a non-finite ``v``:
    the base class then resumes from the last good state with halved steps,
    and the piece in progress restarts with the new step.

    The state carries ``n_samples`` (inner samples so far), ``stage`` and
    ``count`` (the piece to run next), ``n_updates`` (outer updates so far)
    and ``has_estimate`` (whether ``v`` holds a linear-system estimate yet).
    """

    def _initialize(self, problem, x, rng):
        state = super()._initialize(problem, x, rng)
        state.n_samples = state.n_updates = 0
        state.stage, state.count = "inner", 0
        state.has_estimate = state.size_outer_step = state.diverged = False
        state.first_grad_norm = state.grad_norm = None
        return state

    def _uses_coordinate_steps(self, problem):
        """Per-coordinate steps on log L2 strengths (:class:`GroupedL2`), else one step.

        The hypergradient of a log strength scales with the strength, so
        that on IJCNN1 (per-feature strengths) the coordinates' first
        hypergradients span five orders of magnitude: one step sized on the
        largest left the others in place, and AmIGO, SID and stocBiO stayed
        0.21 above ``h*`` after 300 to 1,000 epochs without intercept (with
        per-coordinate steps, 0.0017 to 0.0035 for ``random_state=0``,
        0.0017 to 0.012 over ``random_state`` 0 to 2, since
        :meth:`_adapt_outer_step` restarts iterations). On two topics of 20
        Newsgroups (130,108 strengths) all five predicted at chance (test
        log-loss 0.685 to 0.686); with per-coordinate steps AmIGO, SID and
        stocBiO reach 0.203 to 0.205 in 30 epochs, AID and ITD 0.166 and
        0.204 in 300. One case got worse on the objective: AmIGO on IJCNN1 with
        intercept, in ``BilevelLogisticRegressionCV`` on the dataset's split
        (``random_state`` 0 to 2), ends at a validation log-loss of 0.186
        to 0.195 instead of 0.135 to 0.136. The strengths all fall to
        ``exp(-11)`` to ``exp(-15)`` (seed 0), where the hypergradient,
        proportional to the strength, vanishes, and ``tol`` stops the run
        after 12 or 13 epochs. Its test log-loss is lower all the same:
        0.2105 instead of 0.217 to 0.220.

        Elsewhere one step stays. The trust radii of per-coordinate steps
        are in log units, which an arbitrary ``x`` has not: on the quadratic
        problem of the tests, AmIGO took 1.6 to 1.8 times as many epochs to
        reach 1e-4 with them, SID with the growing schedule 3.7 times. And
        an outer update of sample weights moves only the weights of its
        batch, whose per-coordinate steps then adapt on the rare updates
        that moved them: SID and stocBiO on hyper-cleaning digits reached a
        ROC AUC of 0.83 to 0.85 with them, instead of above 0.9.
        """
        return isinstance(getattr(problem, "hyperparams", None), GroupedL2)

    def _adapt_outer_step(self, state, previous):
        """Adapt the outer steps; restart the iteration in progress if ``x`` moved.

        An epoch ends at a count of samples, often inside an outer iteration
        (AmIGO, SID, stocBiO), and the common level's shift
        (:meth:`StochasticSolver._move_level`) moves ``x`` then. The
        iteration in progress had fixed its L2 strengths (the proximal
        part of its steps) at the old ``x``, and its steps on the new ``x``
        are no longer stable where the strengths grew: on IJCNN1 with
        intercept, AmIGO's linear-system iterates grew threefold per step
        until it diverged five times in a row, each recovery halving the
        steps (``benchmarks/bench_solvers.py``, 300 epochs: final gap 4.5e-2,
        1.3e-2 since). So the iteration starts again at the new ``x``, from
        the current ``z`` and ``v``.
        """
        x = state.x.copy()
        super()._adapt_outer_step(state, previous)
        if not np.array_equal(x, state.x):
            self._restart_iteration(state)

    def _restart_iteration(self, state):
        """Start the outer iteration in progress again, from its inner steps."""
        state.stage, state.count = "inner", 0

    def _advance(self, problem, state):
        """Run one piece of the outer iteration; return ``(n_inner_samples, outer_step)``.

        ``outer_step`` is the step of the outer update made by this piece
        (0 if it made none). Every piece costs samples.
        """
        raise NotImplementedError

    def _outer_updates_per_epoch(self, problem):
        # An outer iteration costs at least one epoch: one update moves the
        # largest coordinate of x (every one, with per-coordinate steps) by
        # about one unit.
        return 1

    def _epoch(self, problem, state):
        state.box = self._outer_box(state)
        n_train = problem.n_train
        target = (state.n_samples // n_train + 1) * n_train
        n_samples, step_sum = 0, 0.0
        while (state.n_samples < target or self._warming_up(state)) and not state.diverged:
            used, step = self._advance(problem, state)
            state.n_samples += used
            n_samples += used
            step_sum += step
        return n_samples, step_sum

    def _warming_up(self, state):
        """Whether the first inner steps have yet to halve the inner gradient.

        The base class rejects a warm-up epoch that increased the inner
        gradient from its value at ``z = 0``; one epoch may be a single step
        (full batches), which may. So until the first linear-system
        estimate, an epoch goes on with the inner steps of the first outer
        iteration (``T`` at most) until the gradient at the start of the last
        step is at most half the first one (the step does not increase it on
        a quadratic).
        """
        return (
            not state.has_estimate and state.stage == "inner"
            and state.grad_norm is not None
            and state.grad_norm > 0.5 * state.first_grad_norm
        )

    def _inner_step(self, problem, state, rows=None):
        """One warm-started inner step of ``z`` on ``rows`` (None: all); count it.

        The L2 part of ``G`` is taken as a proximal step (:func:`prox_step`).
        """
        grad = problem.inner_grad(state.z, state.x, rows)
        self._record_inner_grad(state, grad)
        state.z = prox_step(state.z, grad, problem.inner_l2(state.x), state.inner_step)
        state.count += 1

    def _record_inner_grad(self, state, grad):
        """Keep the norm of the inner gradient of a step, for :meth:`_warming_up`."""
        state.grad_norm = np.linalg.norm(grad)
        if state.first_grad_norm is None:
            state.first_grad_norm = state.grad_norm

    def _flag_divergence(self, state):
        """Make ``v`` non-finite and stop the epoch: the base class recovers."""
        state.v = np.full_like(state.v, np.nan)
        state.diverged = True

    def _first_outer_step(self, problem, state):
        # Called after the warm-up; the step is sized by _outer_update.
        state.size_outer_step = True
        return 0.0

    def _outer_update(self, problem, state, direction):
        """Projected outer step along ``direction``; return the step used."""
        if state.size_outer_step:
            state.outer_step = super()._first_outer_step(problem, state)
            state.size_outer_step = False
        state.x = np.clip(state.x - state.outer_step * direction, *state.box)
        state.n_updates += 1
        return state.outer_step

    def _adapt_truncation(self, state, grad, last_quarters, max_terms):
        """Double ``state.n_terms`` (up to ``max_terms``) if the truncation shows.

        ``last_quarters`` are the contributions to the hypergradient estimate
        ``grad`` of the third and the fourth quarter of the truncated series
        (or unrolling). Once the terms decay geometrically, by a factor ``s``
        from one quarter to the next, the terms left out sum to about
        ``||fourth|| s / (1 - s)`` with ``s = ||fourth|| / ||third||``. The
        length doubles when that estimate exceeds ``TRUNCATION_RTOL`` times
        ``||grad||``, both on the coordinates not held at a bound: the error
        stays a fraction of the hypergradient, the condition under which
        gradient descent with inexact gradients converges, and the length
        grows as the hypergradient shrinks near a solution.
        """
        free = np.ones(grad.shape, dtype=bool)
        if self.bounds is not None:
            free = ~(((state.x <= self.bounds[0]) & (grad > 0))
                     | ((state.x >= self.bounds[1]) & (grad < 0)))
        third, fourth = (np.linalg.norm(w[free]) for w in last_quarters)
        ratio = fourth / third if third > 0 else (0.0 if fourth == 0 else np.inf)
        tail = fourth * ratio / (1.0 - ratio) if ratio < 1 else np.inf
        if tail > TRUNCATION_RTOL * np.linalg.norm(grad[free]):
            state.n_terms = min(max_terms, 2 * state.n_terms)


def _quarter_marks(n_terms):
    """The numbers of terms after which :meth:`_adapt_truncation` needs partial sums."""
    return n_terms // 2, (3 * n_terms) // 4


def _check_count(value, name, minimum=1):
    """Return ``value`` as an int, checked to be an integer at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)
