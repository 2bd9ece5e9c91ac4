"""Full-batch building blocks: inner solver, linear system, hypergradient."""

from functools import cache

import numpy as np
from scipy.linalg import eigh
from threadpoolctl import ThreadpoolController

#: Largest inner dimension for which the Hessian is formed and factorized.
#: Above it, Newton directions and the linear system are solved by CG. The
#: eigendecomposition costs 0.02 s at 400, 0.06 s at 650 and 0.2 s at 1,000
#: (one thread, measured here), less than the hundreds of Python-driven
#: Hessian-vector products of CG on an ill-conditioned problem (digits, 64
#: strengths x 10 classes: 7.9 s of CG for 5 outer iterations).
DENSE_HESSIAN_MAX = 1000


def conjugate_gradient(matvec, b, x0, tol, max_iter):
    """Solve ``A x = b`` for a symmetric positive definite ``A`` by CG.

    Parameters
    ----------
    matvec : callable
        ``u -> A u``.
    b, x0 : ndarray
        Right-hand side and starting point (warm start).
    tol : float
        Stop when the residual norm is at most ``tol``.
    max_iter : int
        Maximum number of iterations.

    Returns
    -------
    x : ndarray
        The approximate solution.
    n_iter : int
        Number of iterations done.
    """
    x = x0.copy()
    r = b - matvec(x)
    rr = r @ r
    d = r.copy()
    for n_iter in range(max_iter):
        if np.sqrt(rr) <= tol:
            return x, n_iter
        Ad = matvec(d)
        step = rr / (d @ Ad)
        x += step * d
        r -= step * Ad
        rr_new = r @ r
        d = r + (rr_new / rr) * d
        rr = rr_new
    return x, max_iter


@cache
def _thread_pools():
    """The BLAS and OpenMP pools of the process, found once (a search costs ms)."""
    return ThreadpoolController()


def single_blas_thread():
    """Context manager: BLAS on one thread.

    The dense algebra of the full-batch solvers is small (matrices of at
    most ``DENSE_HESSIAN_MAX`` rows, products with a few columns), and BLAS
    threads then cost more than they give, far more on a busy machine:
    ``eigh`` of 201 x 201 took 105 ms with two threads and 12 ms with one
    on a loaded 2-core machine, a 1,000 x 64 by 64 x 10 product 12 ms.
    """
    return _thread_pools().limit(limits=1, user_api="blas")


def hessian_solver(problem, z, x):
    """Return ``b -> d11 G(z, x)^+ b``, or None for large problems.

    The Hessian comes from ``problem.inner_hessian_blocks`` (the folds of
    cross-validation give one block per fold), each block pseudo-inverted
    through its eigendecomposition. Unlike CG, this stays accurate on the
    ill-conditioned problems that nearly separable data with tiny strengths
    produce, and it gives the minimum-norm solution where the Hessian is
    singular (the multinomial intercepts, which are defined up to a common
    constant), so iterates stay in its range. None when a block has more than
    ``DENSE_HESSIAN_MAX`` rows.
    """
    if problem.hessian_block_size > DENSE_HESSIAN_MAX:
        return None
    inverses = []
    with single_blas_thread():
        for index, block in problem.inner_hessian_blocks(z, x):
            eigvals, eigvecs = eigh(0.5 * (block + block.T), driver="evd")
            kept = eigvals > len(index) * np.finfo(float).eps * eigvals[-1]
            inverses.append((index, eigvecs[:, kept], eigvals[kept]))

    def solve(b):
        out = np.empty_like(b)
        for index, eigvecs, eigvals in inverses:
            out[index] = eigvecs @ ((eigvecs.T @ b[index]) / eigvals)
        return out

    return solve


def solve_inner(problem, x, z0, tol, max_iter=100):
    """Minimize ``G(., x)`` by Newton's method from ``z0``.

    Each Newton direction solves ``d11 G d = -d1 G``: by Cholesky for small
    problems (see :func:`hessian_solver`), otherwise by conjugate gradient to
    a relative accuracy that tightens as the gradient shrinks (truncated
    Newton); a backtracking line search follows.

    Parameters
    ----------
    problem : BilevelProblem
    x : ndarray
        The hyperparameters.
    z0 : ndarray
        Starting point (warm start).
    tol : float
        Stop when ``||d1 G(z, x)|| <= tol``.
    max_iter : int, default=100
        Maximum number of Newton steps.

    Returns
    -------
    z : ndarray
    n_iter : int
        Number of Newton steps.
    converged : bool
    """
    z = z0.copy()
    value, grad = problem.inner_value_and_grad(z, x)
    for n_iter in range(max_iter):
        grad_norm = np.linalg.norm(grad)
        if grad_norm <= tol:
            return z, n_iter, True
        solve = hessian_solver(problem, z, x)
        if solve is not None:
            direction = solve(-grad)
        else:
            forcing = min(0.5, np.sqrt(grad_norm))
            direction, _ = conjugate_gradient(
                lambda u: problem.inner_hvp(z, x, u), -grad, np.zeros_like(z),
                tol=forcing * grad_norm, max_iter=max(50, z.size),
            )
        z, value, grad = _backtrack(problem, x, z, value, grad, direction)
    return z, max_iter, np.linalg.norm(grad) <= tol


def _backtrack(problem, x, z, value, grad, direction, shrink=0.5, max_halvings=40):
    """Armijo line search along a descent direction.

    Close to the optimum the decrease of ``G`` is below rounding error; a step
    that lowers the gradient norm is then accepted instead. Each trial takes
    the value and the gradient together (one pass over the rows on linear
    problems): Newton's full step is usually accepted at once.
    """
    slope = grad @ direction
    step = 1.0
    for _ in range(max_halvings):
        z_new = z + step * direction
        value_new, grad_new = problem.inner_value_and_grad(z_new, x)
        if value_new <= value + 1e-4 * step * slope:
            return z_new, value_new, grad_new
        if (abs(value_new - value) <= 1e-12 * max(1.0, abs(value))
                and np.linalg.norm(grad_new) < np.linalg.norm(grad)):
            return z_new, value_new, grad_new
        step *= shrink
    return z, value, grad


def solve_linear_system(problem, z, x, v0, tol, max_iter=1000):
    """Solve ``d11 G(z, x) v = -d1 F(z, x)``.

    By Cholesky for small problems (see :func:`hessian_solver`), otherwise by
    conjugate gradient from ``v0``.

    Returns
    -------
    v : ndarray
    n_iter : int
        Number of CG iterations (0 for a direct solve).
    """
    rhs = -problem.outer_grad(z, x)
    solve = hessian_solver(problem, z, x)
    if solve is not None:
        return solve(rhs), 0
    return conjugate_gradient(lambda u: problem.inner_hvp(z, x, u), rhs, v0, tol, max_iter)


def hypergradient(problem, z, x, v):
    """Return ``d2 F(z, x) + d21 G(z, x) v``."""
    return problem.outer_grad_x(z, x) + problem.inner_cross(z, x, v)

