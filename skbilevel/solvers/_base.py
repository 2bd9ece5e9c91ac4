"""What every stochastic solver shares: budget, history, step sizes, recovery."""

import copy
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._exact import hypergradient
from ._result import BilevelResult, History
from ._sampling import check_generator


class DivergenceWarning(ConvergenceWarning):
    """A solver diverged and resumed from its last good state with smaller steps."""


class SolverState:
    """The variables of a run: ``x``, ``z``, ``v``, step sizes and solver extras."""

    def __init__(self, x, z, v, **extras):
        self.x, self.z, self.v = x, z, v
        self.inner_step = self.outer_step = None
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
    of ``x`` by about one unit according to a full-data hypergradient
    estimate; afterwards it adapts once per epoch to how the epoch's mean
    hypergradient estimate turns (see :meth:`_adapt_outer_step`, which
    subclasses may replace by per-coordinate steps).

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
    it oscillates.

    Parameters
    ----------
    batch_size : int, default=64
        Rows per minibatch, for the training and the validation samples.
    step_size : float or None, default=None
        Step of the inner and linear-system updates.
    outer_step_size : float or None, default=None
        Step of the outer updates; None adapts it as described above.
    bounds : tuple of float or None, default=(-15, 15)
        Box onto which ``x`` is projected after every outer step.
    """

    name = None
    max_recoveries = 30
    warm_up_epochs = 1

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

        ``L_B`` interpolates between the mean and the largest per-sample
        smoothness constant as the batch grows.
        """
        smoothness = problem.sample_smoothness(state.x)
        mean, worst = smoothness.mean(), smoothness.max()
        batch = min(self.batch_size, problem.n_train)
        return 1.0 / (mean + (worst - mean) / batch)

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

    def _first_outer_step(self, problem, state):
        grad = hypergradient(problem, state.z, state.x, state.v)
        largest = np.abs(grad).max()
        if not np.isfinite(largest) or largest == 0.0:
            return 1.0
        return 1.0 / (self._outer_updates_per_epoch(problem) * largest)

    def _adapt_outer_step(self, state, previous):
        """Adapt the outer step to the turn of the mean hypergradient estimate.

        The signal is the cosine between this epoch's and the previous
        epoch's moves of ``x`` (after projection, so coordinates held at a
        bound do not count), in the spirit of Pflug's test for stochastic
        approximation. Clear agreement (above 1/2): the steps are timid, grow
        by a tenth. Clear reversal (below -1/2): they overshoot, halve. In
        between, noise dominates the moves: shrink by a tenth, which gives the
        decreasing steps a stochastic method needs close to a solution.

        Called after an accepted epoch that moved ``x``; ``previous`` is the
        state accepted before it.
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
        state.check_grad_norm = None  # set by the warm-up checks
        self.good, self.good_value = state.copy(), self.value

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
        if not warm_up:
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
