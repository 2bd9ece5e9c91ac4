"""What every stochastic solver shares: budget, history, step sizes, recovery."""

import copy
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._exact import hypergradient
from ._result import BilevelResult, History
from ._sampling import check_generator


#: Per-coordinate outer steps (:meth:`StochasticSolver._adapt_coordinate_steps`):
#: trust radius of every coordinate of ``x`` in the first adaptive epoch, and
#: the largest one: how far (in log-strength or logit units) an epoch may
#: move a coordinate.
FIRST_RADIUS, MAX_RADIUS = 2.0, 3.0
#: A diagonal first outer step (``StochasticSolver.diagonal_outer_step``) counts
#: the first hypergradient of each coordinate as at least this share of the
#: largest one: no coordinate's step exceeds 100 times that of the largest.
MIN_GRAD_SHARE = 1e-2
#: Factors of a radius when a coordinate keeps its direction, or reverses it.
RADIUS_GROWTH, RADIUS_SHRINK = 1.5, 0.5
#: Factors of a coordinate's cap on its radius (starts at ``MAX_RADIUS``) when
#: it keeps its direction, or reverses it: the cap damps the cycles that the
#: lag of ``z`` and ``v`` behind ``x`` would otherwise sustain.
CAP_GROWTH, CAP_SHRINK = 1.05, 0.7


class DivergenceWarning(ConvergenceWarning):
    """A solver diverged and resumed from its last good state with smaller steps."""


class SolverState:
    """The variables of a run: ``x``, ``z``, ``v``, step sizes and solver extras."""

    def __init__(self, x, z, v, **extras):
        self.x, self.z, self.v = x, z, v
        self.inner_step = self.outer_step = None
        self.radius = None  # how far an epoch may move each coordinate of x
        self.check_grad_norm = None  # inner gradient norm, set by the warm-up checks
        self.direction = None  # the last epoch's mean hypergradient estimate
        self.__dict__.update(extras)

    def copy(self):
        return copy.deepcopy(self)


class StochasticSolver:
    """Base class of the stochastic bilevel solvers.

    A solver runs epoch by epoch (one epoch: ``n_train`` inner-sample oracle
    evaluations) in :meth:`_epoch`, which subclasses implement. Between
    epochs, in Python, this class records the history, checks the budget and
    the callback, and watches for divergence.

    Step sizes left to None are set from the problem. The inner step comes
    from the per-sample smoothness constants of the problem (see
    :meth:`_default_inner_step`). The outer step is scale-free: a warm-up
    epoch at ``x0`` with no outer update lets ``z`` and ``v`` settle, then the
    first outer step is sized so that one epoch moves the largest coordinate
    of ``x`` (every coordinate, for a diagonal step: SOBA) by about one unit
    according to a full-data hypergradient estimate; afterwards it adapts
    once per epoch to how the epoch's mean hypergradient estimate turns (see
    :meth:`_adapt_outer_step`). Some solvers take per-coordinate steps
    instead (see :meth:`_uses_coordinate_steps`): SABA on every problem,
    the double-loop solvers on L2 strengths.

    A divergence restores the last good state, halves both steps (the inner
    one down to at most its default, from the problem's constants: a user's
    step that diverged once is not trusted again) and emits a
    :class:`DivergenceWarning`. An epoch diverged if it produced non-finite
    values, if ``z`` or ``v`` grew by more than a factor 1e4, or, in a
    warm-up epoch, if the epoch increased the inner gradient (on the full
    training data) from its value at the end of the last warm-up epoch, or
    at the start: an inner step too large makes the iterate oscillate
    instead of settling. Asking for a given decrease would reject good
    steps on badly conditioned problems (hyper-cleaning digits: ten epochs
    to halve the gradient at the default step), and each rejection halves
    the step. The warm-up ends after ``warm_up_epochs`` such epochs in a
    row; a step far too large may still decrease the gradient once before
    it oscillates. A solver whose estimates start from empty memories
    (``empty_memory_start``, SABA) is not held to the gradient test in its
    first epoch, which fills them: from zero memories the gradient may rise
    at any step (a 20 Newsgroups subsample at strength 1: from 0.04 to 0.28
    at the default step, to 0.15 at a twenty-fifth of it; then down to 2e-4
    in five epochs at the default step).

    Parameters
    ----------
    batch_size : int, default=64
        Rows per minibatch of the training samples, and by default of the
        validation samples (SABA scales the latter to the splits' sizes).
    step_size : float or None, default=None
        Step of the inner and linear-system updates.
    outer_step_size : float or None, default=None
        Step of the outer updates; None adapts it as described above.
    bounds : tuple of float or None, default=(-15, 15)
        Box onto which ``x`` is projected after every outer step.
    """

    name = None
    max_recoveries = 30
    #: With one step for all: a first step per coordinate (True), each moving
    #: its coordinate by one unit, then scaled by one factor; or one number
    #: for all that moves the largest coordinate by one unit (False).
    diagonal_outer_step = False
    warm_up_epochs = 1
    empty_memory_start = False

    def __init__(self, batch_size=64, step_size=None, outer_step_size=None,
                 bounds=(-15.0, 15.0)):
        self.batch_size = batch_size
        self.step_size = step_size
        self.outer_step_size = outer_step_size
        self.bounds = bounds

    # -- to implement ------------------------------------------------------

    def _initialize(self, problem, x, rng):
        """Return the :class:`SolverState` at ``x`` (z and v at zero by default)."""
        return SolverState(x, np.zeros(problem.n_inner), np.zeros(problem.n_inner))

    def _default_inner_step(self, problem, state):
        """Inner step from the problem's constants: ``1 / L_B`` for batch size ``B``.

        ``L_B`` is :meth:`_batch_smoothness` with the mean per-sample
        smoothness constant (a bound) as the full-data one.
        """
        smoothness = problem.sample_smoothness(state.x)
        return 1.0 / self._batch_smoothness(problem, smoothness.mean(), smoothness)

    def _batch_smoothness(self, problem, full, per_sample):
        """Expected smoothness ``L_B`` of a minibatch of ``B`` of the ``n`` rows.

        Gower et al. (2019), sampling without replacement:
        ``L_B = n (B - 1) / (B (n - 1)) L + (n - B) / (B (n - 1)) L_max``,
        from the full data's constant ``L`` to the largest per-sample one.
        """
        n, batch = problem.n_train, min(self.batch_size, problem.n_train)
        worst = float(per_sample.max())
        if n == 1:
            return worst
        return (n * (batch - 1) * full + (n - batch) * worst) / (batch * (n - 1))

    def _outer_updates_per_epoch(self, problem):
        """How many outer updates one epoch makes (sets the first outer step)."""
        return -(-problem.n_train // min(self.batch_size, problem.n_train))

    def _epoch(self, problem, state):
        """Run about one epoch; return ``(n_inner_samples, sum_of_outer_steps)``.

        The sum of the outer step sizes used in the epoch turns the move of
        ``x`` into a mean hypergradient estimate (after projection); with
        per-coordinate steps it is an array, one sum per coordinate.
        """
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------

    def solve(self, problem, x0=None, *, max_epochs=10, time_limit=None, tol=None,
              random_state=None, callback=None, verbose=0):
        """Minimize ``h(x) = F(z*(x), x)`` within a budget of epochs and time.

        Parameters
        ----------
        problem : BilevelProblem
        x0 : ndarray of shape (n_outer,), default=zeros
            Starting hyperparameters.
        max_epochs : float, default=10
            Budget in epochs (``n_train`` inner-sample evaluations each).
        time_limit : float or None, default=None
            Budget in seconds of solver time.
        tol : float or None, default=None
            Stop when the norm of the epoch's hypergradient estimate is at
            most ``tol``.
        random_state : int, RandomState, Generator or None, default=None
            Seeds the minibatches: the same seed gives the same result.
        callback : callable, default=None
            Called as ``callback(state)`` after each epoch; True stops.
        verbose : int, default=0
            If positive, print one line per epoch.

        Returns
        -------
        BilevelResult
            ``history`` holds per epoch ``time`` (solver time, excluding the
            evaluations made for the history), ``epoch``, ``value`` (the
            outer objective ``F(z, x)`` on the full validation data),
            ``grad_norm`` (norm of the epoch's mean hypergradient estimate,
            after projection onto the bounds),
            ``inner_step`` and ``outer_step`` (the mean over the coordinates
            for per-coordinate steps).
        """
        rng = check_generator(random_state)
        x0 = np.zeros(problem.n_outer) if x0 is None else np.array(x0, dtype=float)
        if x0.shape != (problem.n_outer,):
            raise ValueError(f"x0 must have shape ({problem.n_outer},); got {x0.shape}.")
        self._project(x0)
        start = time.perf_counter()
        state = self._initialize(problem, x0, rng)
        state.inner_step = (
            self._default_inner_step(problem, state) if self.step_size is None
            else float(self.step_size)
        )
        adaptive = self.outer_step_size is None
        state.outer_step = 0.0 if adaptive else float(self.outer_step_size)
        state.coordinate_steps = self._uses_coordinate_steps(problem)
        run = _Run(self, problem, state, start, callback, verbose)
        run.record(grad_norm=np.nan)
        if adaptive:
            # Warm-up: z and v settle at x0 before the first outer step is sized.
            settled = 0
            while (settled < self.warm_up_epochs and not run.stopped
                   and run.epochs < max_epochs):
                settled = settled + 1 if run.epoch(warm_up=True) else 0
            if settled == self.warm_up_epochs:
                state = run.state
                state.outer_step = self._first_outer_step(problem, state)
                run.accept()
        while not run.stopped and run.epochs < max_epochs:
            if time_limit is not None and run.solver_time >= time_limit:
                run.message = "time limit reached"
                break
            run.epoch(adaptive=adaptive)
            if tol is not None and run.last_grad_norm <= tol:
                run.converged, run.message = True, "hypergradient estimate below tol"
                break
        else:
            if not run.stopped:
                run.message = "epoch budget reached"
        return run.result()

    def _uses_coordinate_steps(self, problem):
        """Whether the adaptive outer steps of a run on ``problem`` are per coordinate.

        One step for all coordinates here (see :meth:`_adapt_global_step`).
        """
        return False

    def _first_outer_step(self, problem, state):
        return self._size_outer_step(problem, state, self._outer_updates_per_epoch(problem))

    def _size_outer_step(self, problem, state, updates):
        """First outer step: ``updates`` updates move ``x`` about one unit.

        Sized from the full-data hypergradient at the end of the warm-up.
        With one step, the largest coordinate moves by one unit; with a
        diagonal one, every coordinate does (counting its hypergradient as at
        least ``MIN_GRAD_SHARE`` times the largest); with per-coordinate
        steps, every coordinate moves by ``FIRST_RADIUS``
        (a coordinate with a zero estimate gets the step of the largest).
        Per-coordinate steps start the state of
        :meth:`_start_coordinate_steps`, whose cap they respect.
        """
        grad = np.abs(hypergradient(problem, state.z, state.x, state.v))
        largest = grad.max()
        if not np.isfinite(largest) or largest == 0.0:
            grad[:], largest = 1.0, 1.0
        if not state.coordinate_steps:
            if self.diagonal_outer_step:
                return 1.0 / (updates * np.maximum(grad, MIN_GRAD_SHARE * largest))
            return 1.0 / (updates * largest)
        grad[grad == 0.0] = largest
        self._start_coordinate_steps(problem, state)
        return np.minimum(FIRST_RADIUS / (updates * grad), state.max_outer_step)

    def _start_coordinate_steps(self, problem, state):
        """Set the trust radii, their caps, the level's steps and the step cap.

        Per-coordinate steps stay at most ``1 / spread_penalty`` for a
        problem with a spread penalty: the penalty is an exact quadratic of
        curvature ``spread_penalty`` taken by explicit steps, which beyond
        that swing across the trust box (a penalty worth 10,000 validation
        rows per strength on IJCNN1: test log-loss 0.278 against 0.2104).
        """
        state.radius = np.full(problem.n_outer, FIRST_RADIUS)
        state.cap = np.full(problem.n_outer, MAX_RADIUS)
        state.last_move = np.zeros(problem.n_outer)
        state.level_radius, state.level_sign, state.level_move = FIRST_RADIUS, 0.0, 0.0
        spread = getattr(problem, "spread_penalty", 0.0)
        state.max_outer_step = np.inf if spread == 0 else 1.0 / spread

    def _outer_box(self, state):
        """The box of ``x`` for an epoch: the bounds within the trust radii."""
        lower, upper = (-np.inf, np.inf) if self.bounds is None else self.bounds
        lower, upper = np.full(state.x.shape, lower, float), np.full(state.x.shape, upper, float)
        if state.radius is not None:
            np.maximum(lower, state.x - state.radius, out=lower)
            np.minimum(upper, state.x + state.radius, out=upper)
        return lower, upper

    def _adapt_outer_step(self, state, previous):
        """Adapt the outer step(s) after an accepted epoch that moved ``x``.

        ``previous`` is the state accepted before it. See
        :meth:`_adapt_coordinate_steps` and :meth:`_adapt_global_step`.
        """
        if state.coordinate_steps:
            self._adapt_coordinate_steps(state, previous)
            if state.x.size > 1:
                self._move_level(state, state.x - previous.x)
        else:
            self._adapt_global_step(state, previous)

    def _adapt_coordinate_steps(self, state, previous):
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
        (measured with SABA: relative gaps stuck at 3e-2). Then its step is
        rescaled so that, at this epoch's mean hypergradient, the next epoch
        moves it by its radius (within the cap of
        :meth:`_start_coordinate_steps` under a spread penalty). The steps
        thus follow the scale of each coordinate's hypergradient (like
        ``exp(x_k)`` for a small strength ``exp(x_k)``, where one global step
        stalls), and the radii shrink where the moves turn into noise.
        Coordinates that did not move (held at a bound) keep their step and
        radius.
        """
        move = state.x - previous.x
        moved = move != 0.0
        turn = move * state.last_move
        state.cap = np.minimum(MAX_RADIUS, state.cap * _factor(turn, CAP_GROWTH, CAP_SHRINK))
        radius = np.minimum(state.cap, state.radius * _factor(turn, RADIUS_GROWTH, RADIUS_SHRINK))
        scale = np.divide(radius, np.abs(move), out=np.ones_like(radius), where=moved)
        state.outer_step = np.minimum(state.outer_step * scale, state.max_outer_step)
        state.radius = radius
        state.last_move = np.where(moved, move, state.last_move)

    def _move_level(self, state, move):
        """Move the common level of ``x`` until its hypergradient first turns.

        Per-coordinate signs miss a direction shared by all coordinates
        when each one's estimate is dominated by terms of its own: on 20
        Newsgroups, 130,000 strengths start at 1, far above their best
        common level, but the spread penalty sets the sign of each estimate
        and their mean move is about zero (the fit stayed at chance). So the
        level, the mean of ``x``, takes Rprop steps of its own on the sign
        of the summed estimate (the hypergradient of a shift of all
        coordinates): a radius of ``FIRST_RADIUS``, growing by
        ``RADIUS_GROWTH`` up to ``MAX_RADIUS``; the epoch's ``move`` is
        topped up by a shift so that its mean reaches the radius in that
        direction. At the first turn, the last shift is half undone and the
        level retires, leaving the coordinates to refine. A shift leaves
        the outer objective unchanged (the spread penalty ignores the
        level) but for the bounds. The same holds for any ``x`` of several
        coordinates (the logits of sample weights too).
        """
        if state.level_radius == 0.0:
            return
        sign = -np.sign(state.direction.sum())
        if sign * state.level_sign < 0:
            state.x -= 0.5 * state.level_move
            state.level_radius = 0.0
        else:
            if state.level_sign != 0.0:
                state.level_radius = min(MAX_RADIUS, state.level_radius * RADIUS_GROWTH)
            state.level_sign = sign
            state.level_move = sign * max(0.0, state.level_radius - sign * move.mean())
            state.x += state.level_move
        self._project(state.x)

    def _adapt_global_step(self, state, previous):
        """Adapt the one outer step to the turn of the mean hypergradient estimate.

        The signal is the cosine between this epoch's and the previous
        epoch's moves of ``x`` (after projection, so coordinates held at a
        bound do not count), in the spirit of Pflug's test for stochastic
        approximation. Clear agreement (above 1/2): the steps are timid, grow
        by a tenth. Clear reversal (below -1/2): they overshoot, halve. In
        between, noise dominates the moves: shrink by a tenth, which gives the
        decreasing steps a stochastic method needs close to a solution.
        """
        previous, current = previous.direction, state.direction
        if previous is None or current is None:
            return
        norms = np.linalg.norm(previous) * np.linalg.norm(current)
        cosine = previous @ current / norms if norms > 0 else 0.0
        if cosine > 0.5:
            state.outer_step *= 1.1
        elif cosine < -0.5:
            state.outer_step *= 0.5
        else:
            state.outer_step *= 0.9

    def _project(self, x):
        if self.bounds is not None:
            np.clip(x, self.bounds[0], self.bounds[1], out=x)


def _factor(turn, growth, shrink):
    """``growth`` where ``turn > 0``, ``shrink`` where ``turn < 0``, else 1."""
    return np.where(turn > 0, growth, np.where(turn < 0, shrink, 1.0))


def prox_step(w, direction, l2, step):
    """One step on ``w`` along ``direction`` with its L2 part taken exactly.

    ``direction`` includes the term ``l2 * w`` of the quadratic part
    ``(1/2) sum_c l2_c w_c^2``; that term is removed and applied as a
    proximal (implicit) step, ``(w - step * (direction - l2 * w)) / (1 + step * l2)``,
    which has the same fixed points and is stable for any strength.
    """
    return (w - step * (direction - l2 * w)) / (1.0 + step * l2)


class _Run:
    """The bookkeeping of one call to :meth:`StochasticSolver.solve`."""

    def __init__(self, solver, problem, state, start, callback, verbose):
        self.solver, self.problem, self.state = solver, problem, state
        self.callback, self.verbose = callback, verbose
        self.history = History()
        self.solver_time = time.perf_counter() - start
        self.epochs = 0.0
        self.n_recoveries = 0
        self.stopped = self.converged = False
        self.message = ""
        self.last_grad_norm = np.inf
        self.value = self._value(state)
        self.good, self.good_value = state.copy(), self.value
        self.good_epochs = 0.0  # when the good state was reached

    def _value(self, state):
        with np.errstate(all="ignore"):
            return self.problem.outer_value(state.z, state.x)

    def record(self, grad_norm):
        state = self.state
        self.history.record(
            time=self.solver_time, epoch=self.epochs, value=self.value,
            grad_norm=grad_norm, inner_step=state.inner_step,
            outer_step=np.mean(state.outer_step),
        )
        if self.verbose:
            print(
                f"[{self.solver.name}] epoch {self.epochs:7.2f}  F = {self.value:.6g}  "
                f"|hypergrad| = {grad_norm:.3e}  time = {self.solver_time:.2f}s"
            )

    def accept(self):
        self.good, self.good_value = self.state.copy(), self.value
        self.good_epochs = self.epochs

    def epoch(self, adaptive=False, warm_up=False):
        """Run one epoch; keep it, or recover from a divergence (return False).

        An epoch may make no outer step (double-loop solvers, whose outer
        iteration lasts several epochs): it then keeps the last direction and
        leaves the outer step as it is.
        """
        state = self.state
        x_before = state.x.copy()
        tic = time.perf_counter()
        with np.errstate(all="ignore"):
            n_samples, step_sum = self.solver._epoch(self.problem, state)
        self.solver_time += time.perf_counter() - tic
        stepped = np.any(step_sum > 0)
        if stepped:
            state.direction = (x_before - state.x) / step_sum
        grad_norm = np.linalg.norm(state.direction) if stepped else np.nan
        self.epochs += n_samples / self.problem.n_train
        self.value = self._value(state)
        accepted = not self._diverged(state, warm_up)
        if accepted:
            if adaptive and stepped:
                self.solver._adapt_outer_step(state, self.good)
            if stepped:
                self.last_grad_norm = grad_norm
            self.accept()
        else:
            self._recover()
        self.record(grad_norm)
        if self.callback is not None and self.callback(self.state):
            self.stopped, self.message = True, "stopped by the callback"
        return accepted

    def _diverged(self, state, warm_up):
        finite = np.isfinite(self.value) and all(
            np.isfinite(a).all() for a in (state.x, state.z, state.v)
        )
        if not finite:
            return True
        good = self.good
        if any(
            np.linalg.norm(new) > 1e4 * (1.0 + np.linalg.norm(old))
            for new, old in ((state.z, good.z), (state.v, good.v))
        ):
            return True
        if not warm_up or (self.solver.empty_memory_start and self.good_epochs == 0):
            return False
        if self.good.check_grad_norm is None:
            self.good.check_grad_norm = self._check_grad_norm(self.good)
        new = self._check_grad_norm(state)
        if not new <= self.good.check_grad_norm:
            return True
        state.check_grad_norm = new
        return False

    def _check_grad_norm(self, state):
        """Norm of the inner gradient on the full training data."""
        with np.errstate(all="ignore"):
            return np.linalg.norm(self.problem.inner_grad(state.z, state.x))

    def _recover(self):
        self.n_recoveries += 1
        if self.n_recoveries > self.solver.max_recoveries:
            raise FloatingPointError(
                f"{self.solver.name} diverged {self.n_recoveries} times in a row even "
                "with steps reduced each time; set smaller step sizes."
            )
        inner_step, outer_step = self.state.inner_step, self.state.outer_step
        warnings.warn(
            f"{self.solver.name} diverged at epoch {self.epochs:.2f} (inner step "
            f"{inner_step:.3g}, outer step {np.max(outer_step):.3g}); resuming from the last "
            "good state with both steps halved (the inner step at most its default).",
            DivergenceWarning,
            stacklevel=4,
        )
        self.state = self.good.copy()
        default = self.solver._default_inner_step(self.problem, self.state)
        self.state.inner_step = min(inner_step / 2, default)
        self.state.outer_step = outer_step / 2
        self.state.direction = None
        self.good = self.state.copy()
        self.value = self.good_value

    def result(self):
        state = self.good
        return BilevelResult(
            x=state.x.copy(), z=state.z.copy(), v=state.v.copy(),
            history=self.history.as_arrays(), n_iter=len(self.history.as_arrays()["time"]) - 1,
            converged=self.converged, message=self.message,
        )
