"""The deterministic reference solver: exact implicit differentiation, L-BFGS-B outside."""

import time

import numpy as np
from scipy.optimize import minimize

from ._exact import hypergradient, solve_inner, solve_linear_system
from ._result import BilevelResult, History


class _ValueAndGradient:
    """``h(x)`` and ``grad h(x)`` with the inner variables warm-started across calls."""

    def __init__(self, problem, z0, v0, inner_tol, linear_tol, max_inner_iter):
        self.problem = problem
        self.z, self.v = z0.copy(), v0.copy()
        self.inner_tol, self.linear_tol = inner_tol, linear_tol
        self.max_inner_iter = max_inner_iter
        self.n_inner_iter = self.n_linear_iter = 0
        self.inner_converged = True
        self.last = None
        self.deadline = None  # perf_counter time after which no evaluation starts

    def __call__(self, x):
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            raise _OutOfTime
        problem = self.problem
        self.z, n_inner, converged = solve_inner(
            problem, x, self.z, self.inner_tol, self.max_inner_iter
        )
        self.inner_converged &= converged
        self.v, n_linear = solve_linear_system(
            problem, self.z, x, self.v, self.linear_tol, max_iter=10 * problem.n_inner + 100
        )
        self.n_inner_iter += n_inner
        self.n_linear_iter += n_linear
        # The Lagrangian F + <v, d1 G> equals h(x) up to second-order terms in
        # the inner and linear-system errors, where F alone is first order:
        # this keeps L-BFGS-B's line search reliable close to the optimum.
        value = problem.outer_value(self.z, x) + self.v @ problem.inner_grad(self.z, x)
        grad = hypergradient(problem, self.z, x, self.v)
        if not (np.isfinite(value) and np.isfinite(grad).all()):
            raise FloatingPointError(
                "the outer objective or its gradient is not finite at the current "
                "hyperparameters; narrow the bounds."
            )
        self.last = (x.copy(), value, grad)
        return value, grad


class _OutOfTime(Exception):
    """The time limit passed: no further evaluation of ``h`` starts."""


def solve_reference(problem, x0=None, *, bounds=(-15.0, 15.0), tol=1e-6,
                    inner_tol=1e-10, linear_tol=None, max_iter=200,
                    max_inner_iter=100, time_limit=None, callback=None, verbose=0):
    """Minimize ``h(x) = F(z*(x), x)`` with exact hypergradients (deterministic AID).

    Every evaluation solves the inner problem by Newton-CG and the linear
    system by conjugate gradient, both warm-started from the previous
    evaluation, then takes ``grad h = d2 F + d21 G v``; L-BFGS-B minimizes
    ``h`` over a box. This is the library's reference (ALGORITHMS.md 3.6): it
    is what the stochastic solvers are measured against, and a real solver
    for small data.

    Parameters
    ----------
    problem : BilevelProblem
    x0 : ndarray of shape (n_outer,), default=zeros
        Starting hyperparameters.
    bounds : tuple of float or None, default=(-15, 15)
        Box on every coordinate of ``x``; None for no bounds.
    tol : float, default=1e-6
        Stop when the largest entry of the projected hypergradient is at most
        ``tol``.
    inner_tol : float, default=1e-10
        Tolerance on ``||d1 G||`` of the inner solver.
    linear_tol : float, default=inner_tol
        Tolerance on the residual norm of the linear system.
    max_iter : int, default=200
        Maximum number of outer (L-BFGS-B) iterations.
    max_inner_iter : int, default=100
        Maximum number of Newton steps per inner solve.
    time_limit : float or None, default=None
        Budget in seconds: once spent, no new evaluation of ``h`` starts (the
        line searches of an outer iteration included), and the last
        accepted iterate is returned. The evaluation at ``x0`` always runs.
    callback : callable, default=None
        Called as ``callback(x, value)`` after each outer iteration; a return
        value of True stops the run.
    verbose : int, default=0
        If positive, print one line per outer iteration.

    Returns
    -------
    BilevelResult
        ``history`` holds per outer iteration ``time``, ``value`` (``h``),
        ``grad_norm`` (``||grad h||``), ``inner_iter`` and ``linear_iter``
        (cumulative Newton steps and CG iterations).
    """
    x0 = np.zeros(problem.n_outer) if x0 is None else np.asarray(x0, dtype=float)
    if x0.shape != (problem.n_outer,):
        raise ValueError(f"x0 must have shape ({problem.n_outer},); got {x0.shape}.")
    oracle = _ValueAndGradient(
        problem, np.zeros(problem.n_inner), np.zeros(problem.n_inner), inner_tol,
        inner_tol if linear_tol is None else linear_tol, max_inner_iter,
    )
    history = History()
    start = time.perf_counter()
    accepted = {}

    def record(x):
        if oracle.last is None or not np.array_equal(oracle.last[0], x):
            oracle(x)
        _, value, grad = oracle.last
        accepted.update(x=x.copy(), z=oracle.z.copy(), v=oracle.v.copy())
        history.record(
            time=time.perf_counter() - start, value=value,
            grad_norm=np.linalg.norm(grad), inner_iter=oracle.n_inner_iter,
            linear_iter=oracle.n_linear_iter,
        )
        if verbose:
            print(
                f"[reference] iter {len(history.as_arrays()['time']) - 1:4d}  "
                f"h = {value:.8g}  |grad h| = {np.linalg.norm(grad):.3e}  "
                f"time = {time.perf_counter() - start:.2f}s"
            )
        return value

    record(x0)
    if time_limit is not None:
        oracle.deadline = start + time_limit

    def step_callback(intermediate_result):
        value = record(intermediate_result.x)
        if callback is not None and callback(intermediate_result.x, value):
            raise StopIteration

    box = None if bounds is None else [tuple(bounds)] * problem.n_outer
    try:
        result = minimize(
            oracle, x0, jac=True, method="L-BFGS-B", bounds=box, callback=step_callback,
            options=dict(maxiter=max_iter, gtol=tol, ftol=1e-15, maxcor=20),
        )
    except _OutOfTime:
        recorded = history.as_arrays()
        return BilevelResult(
            x=accepted["x"], z=accepted["z"], v=accepted["v"], history=recorded,
            n_iter=len(recorded["time"]) - 1, converged=False, message="time limit reached",
        )
    x = result.x
    oracle.deadline = None  # the returned iterate is always evaluated
    if oracle.last is None or not np.array_equal(oracle.last[0], x):
        oracle(x)
    converged = bool(result.success and oracle.inner_converged)
    return BilevelResult(
        x=x, z=oracle.z.copy(), v=oracle.v.copy(), history=history.as_arrays(),
        n_iter=int(result.nit), converged=converged, message=str(result.message),
    )
