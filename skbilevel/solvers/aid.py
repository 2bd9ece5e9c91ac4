"""Deterministic double-loop references: AID-BiO and ITD-BiO (``002`` Algorithm 1).

Both run on full batches. One outer iteration costs many passes over the
training data (``T`` inner steps, then the linear system or the backward
pass), so both are written as resumable pieces (see ``_double_loop``).
"""

import numpy as np

from ._base import prox_step
from ._double_loop import (
    DIVERGENCE_GROWTH,
    FIRST_TRUNCATION,
    _DoubleLoopSolver,
    _check_count,
    _quarter_marks,
)
from ._exact import conjugate_gradient, hypergradient


class _FullBatchSolver(_DoubleLoopSolver):
    """Full-batch gradient descent inside, with the L2 part of ``G`` exact.

    The default inner step is ``2 / L`` with ``L = mean_i L_i``
    (``sample_smoothness``), a bound on the smoothness of the data part of
    ``G`` over the full batch. The quadratic part ``(1/2) sum_c r_c z_c^2``
    is taken exactly by :func:`prox_step`, which is gradient descent
    preconditioned by ``1 / (1 + step * r)``: its iteration matrix
    ``(I - step D) / (1 + step * r)`` (``D`` the data part of ``d11 G``) has
    norm at most ``1 / (1 + step * min r)`` for any step up to ``2 / L``.
    ``2 / L`` is ``004``'s ``2 / (L + mu)`` for the data part, whose strong
    convexity ``mu`` is unknown. Plain gradient descent would need
    ``2 / (L + max r + min r)``, which the strengths reached at the default
    bounds (``exp(15)``) make about ``6e-7``.
    """

    #: The result does not depend on ``random_state``.
    deterministic = True

    def _default_inner_step(self, problem, state):
        return 2.0 / problem.sample_smoothness(state.x).mean()


class AID(_FullBatchSolver):
    """AID-BiO: approximate implicit differentiation on full batches.

    Each outer iteration (``002`` Algorithm 1, AID) runs ``T`` steps of
    gradient descent on ``G(., x)`` from the last ``z`` (warm start), solves
    ``d11 G(z, x) v = -d1 F(z, x)`` by conjugate gradient from the last ``v``
    (warm start), then steps along the hypergradient
    ``d2 F(z, x) + d21 G(z, x) v`` and projects ``x`` onto the bounds.

    Cost per outer iteration, in epochs (full passes over the training
    data): ``T`` gradients, one Hessian-vector product for the initial CG
    residual plus one per CG iteration, and one cross-derivative product.
    The CG solve runs in one piece, so an epoch that contains it can last up
    to ``n_linear_steps + 1`` epochs.

    Parameters
    ----------
    batch_size : ignored
        AID uses full batches; accepted for a uniform solver interface.
    step_size : float or None, default=None
        Inner gradient step. None sets ``2 / L`` with ``L`` the mean of the
        per-sample smoothness constants; the L2 part of ``G`` is taken
        exactly, as a proximal step (see :class:`_FullBatchSolver`).
    outer_step_size, bounds
        See :class:`StochasticSolver`.
    n_inner_steps : int, default=10
        Gradient steps on ``G`` per outer iteration (``T``).
    n_linear_steps : int, default=20
        Largest number of CG iterations per outer iteration (``N``).
    linear_tol : float, default=1e-10
        CG stops when the residual is at most ``linear_tol * ||d1 F||``.
    """

    name = "aid"

    def __init__(self, batch_size=None, step_size=None, outer_step_size=None,
                 n_inner_steps=10, n_linear_steps=20, linear_tol=1e-10,
                 bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.n_inner_steps = n_inner_steps
        self.n_linear_steps = n_linear_steps
        self.linear_tol = linear_tol

    def _initialize(self, problem, x, rng):
        _check_count(self.n_inner_steps, "n_inner_steps")
        _check_count(self.n_linear_steps, "n_linear_steps")
        if not self.linear_tol >= 0:
            raise ValueError(f"linear_tol must be non-negative; got {self.linear_tol!r}.")
        return super()._initialize(problem, x, rng)

    def _advance(self, problem, state):
        n_train, z, x = problem.n_train, state.z, state.x
        if state.stage == "inner":
            self._inner_step(problem, state)
            if state.count == self.n_inner_steps:
                state.stage = "linear"
            return n_train, 0.0
        if state.stage == "linear":
            rhs = -problem.outer_grad(z, x)
            state.v, n_iter = conjugate_gradient(
                lambda u: problem.inner_hvp(z, x, u), rhs, state.v,
                tol=self.linear_tol * np.linalg.norm(rhs), max_iter=self.n_linear_steps,
            )
            state.has_estimate = True
            state.stage = "outer"
            return (n_iter + 1) * n_train, 0.0
        step = self._outer_update(problem, state, hypergradient(problem, z, x, state.v))
        state.stage, state.count = "inner", 0
        return n_train, step


def unrolled_step(problem, z, x, l2, step):
    """One inner step of ITD: ``z - step * d1 G(z, x) / (1 + step * l2)``.

    Gradient descent with the diagonal preconditioner ``1 / (1 + step * l2)``,
    which is the proximal step on the L2 part (:func:`prox_step`); ``l2`` is
    held fixed when differentiating with respect to ``x``.
    """
    return prox_step(z, problem.inner_grad(z, x), l2, step)


def _backward_step(problem, z, x, adjoint, l2, step):
    """Pull the adjoint back through one :func:`unrolled_step` taken at ``z``.

    With ``u = step * adjoint / (1 + step * l2)``, the step's Jacobians give
    ``adjoint - d11 G(z, x) u`` (in ``z``) and ``-d21 G(z, x) u`` (in ``x``),
    both from one pass over the data. Returns ``(new_adjoint, -d21 G u, -u)``.
    """
    u = step * adjoint / (1.0 + step * l2)
    _, hvp, cross = problem.inner_oracles(z, x, u)
    return adjoint - hvp, -cross, -u


def unrolled_hypergradient(problem, x, z0, step, n_steps):
    """Gradient in ``x`` of ``F(z_T(x), x)`` after ``T`` unrolled inner steps.

    ``z_0 = z0`` is held fixed and ``z_{t+1}`` is :func:`unrolled_step` with
    the preconditioner ``l2 = inner_l2(x)`` frozen at ``x``. Reverse mode
    (``002`` Proposition 2): from ``a_T = d1 F(z_T, x)``, for ``t = T-1..0``,
    ``u_t = step * a_{t+1} / (1 + step * l2)``,
    ``a_t = a_{t+1} - d11 G(z_t, x) u_t``, and the gradient is
    ``d2 F(z_T, x) - sum_t d21 G(z_t, x) u_t``.

    As ``T`` grows, the iterates reach ``z*(x)``, ``-sum_t u_t`` tends to
    ``v*(x)`` and the gradient to the hypergradient (the derivative of the
    frozen preconditioner multiplies ``d1 G(z_t, x)``, which vanishes there).

    Returns
    -------
    grad : ndarray of shape (n_outer,)
    z : ndarray of shape (n_inner,)
        The last iterate ``z_T``.
    v : ndarray of shape (n_inner,)
        ``-sum_t u_t``, the analog of the linear-system solution.
    """
    l2 = problem.inner_l2(x)
    iterates = [np.asarray(z0, dtype=float)]
    for _ in range(n_steps):
        iterates.append(unrolled_step(problem, iterates[-1], x, l2, step))
    z = iterates.pop()
    adjoint = problem.outer_grad(z, x)
    grad = problem.outer_grad_x(z, x)
    v = np.zeros_like(z)
    for z_t in reversed(iterates):
        adjoint, cross, u = _backward_step(problem, z_t, x, adjoint, l2, step)
        grad = grad + cross
        v += u
    return grad, z, v


#: Largest number of unrolled steps of ITD under the adaptive default.
MAX_UNROLLED_STEPS = 1000


class ITD(_FullBatchSolver):
    """ITD-BiO: iterative differentiation through ``T`` inner steps, full batch.

    Each outer iteration (``002`` Algorithm 1, ITD) runs ``T`` steps of
    :func:`unrolled_step` on ``G(., x)`` from the last ``z`` (warm start,
    not differentiated), storing the iterates, then differentiates
    ``F(z_T(x), x)`` by reverse mode, written with the problem's oracles:
    each backward step needs ``d11 G u`` and ``d21 G u`` at one stored
    iterate, one pass over the data (see :func:`unrolled_hypergradient`).
    The step then follows that gradient and projects ``x`` onto the bounds.

    Cost per outer iteration: ``2 T`` epochs. Memory: ``T`` inner iterates,
    which the base class copies with the state after every epoch: ITD is a
    reference for models of modest size.
    Unlike AID, the hypergradient keeps a bias that warm start does not
    remove: with the iterates close to ``z*``, it is the ``T``-term
    truncation of the Neumann series of ``v*``, whose factors have norm up to
    ``1 / (1 + step * min r)``, so the ``T`` needed grows like
    ``kappa log(1 / tol)``.

    ``v`` holds ``-sum_t u_t`` (see :func:`unrolled_hypergradient`), which
    tends to the linear-system solution as ``T`` grows.

    Parameters
    ----------
    batch_size : ignored
        ITD uses full batches; accepted for a uniform solver interface.
    step_size : float or None, default=None
        Inner gradient step; None sets ``2 / L`` (as :class:`AID`).
    outer_step_size, bounds
        See :class:`StochasticSolver`.
    n_inner_steps : int or None, default=None
        Unrolled steps per outer iteration (``T``). None starts at
        ``FIRST_TRUNCATION`` and doubles, up to ``MAX_UNROLLED_STEPS``,
        whenever the truncation error estimated from the last two quarters
        of the backward pass exceeds ``TRUNCATION_RTOL`` times the
        hypergradient (see :meth:`_DoubleLoopSolver._adapt_truncation`).
    """

    name = "itd"

    def __init__(self, batch_size=None, step_size=None, outer_step_size=None,
                 n_inner_steps=None, bounds=(-15.0, 15.0)):
        super().__init__(batch_size, step_size, outer_step_size, bounds)
        self.n_inner_steps = n_inner_steps

    def _initialize(self, problem, x, rng):
        if self.n_inner_steps is not None:
            _check_count(self.n_inner_steps, "n_inner_steps")
        state = super()._initialize(problem, x, rng)
        state.n_terms = (
            FIRST_TRUNCATION if self.n_inner_steps is None else self.n_inner_steps
        )
        return state

    def _advance(self, problem, state):
        n_train, x = problem.n_train, state.x
        if state.count > 0 and state.unroll_step != state.inner_step:
            # A divergence halved the steps: unroll again from the same start.
            state.z, state.stage, state.count = state.iterates[0].copy(), "inner", 0
        if state.stage == "inner":
            if state.count == 0:  # fix the step, preconditioner and T of this unrolling
                state.unroll_step, state.l2 = state.inner_step, problem.inner_l2(x)
                state.iterates = np.empty((state.n_terms, problem.n_inner))
            state.iterates[state.count] = state.z
            grad = problem.inner_grad(state.z, x)
            self._record_inner_grad(state, grad)
            state.z = prox_step(state.z, grad, state.l2, state.unroll_step)  # unrolled_step
            state.count += 1
            if state.count == len(state.iterates):
                state.stage = "backward"
                state.adjoint = problem.outer_grad(state.z, x)
                state.adjoint_norm = np.linalg.norm(state.adjoint)
                state.grad = problem.outer_grad_x(state.z, x)
                state.v_sum = np.zeros(problem.n_inner)
                state.marks = []
            return n_train, 0.0
        state.count -= 1
        state.adjoint, cross, u = _backward_step(
            problem, state.iterates[state.count], x, state.adjoint, state.l2,
            state.unroll_step,
        )
        if np.linalg.norm(state.adjoint) > DIVERGENCE_GROWTH * state.adjoint_norm:
            self._flag_divergence(state)  # a step this large makes the adjoint grow
            return n_train, 0.0
        state.grad += cross
        state.v_sum += u
        if len(state.iterates) - state.count in _quarter_marks(len(state.iterates)):
            state.marks.append(state.grad.copy())  # ITD with the last T/2, 3T/4 steps
        if state.count > 0:
            return n_train, 0.0
        state.v = state.v_sum
        state.has_estimate = True
        state.stage = "inner"
        if self.n_inner_steps is None:
            half, three_quarters = state.marks
            self._adapt_truncation(
                state, state.grad, (three_quarters - half, state.grad - three_quarters),
                MAX_UNROLLED_STEPS,
            )
        return n_train, self._outer_update(problem, state, state.grad)
