"""A quadratic bilevel problem with a closed-form solution, for testing solvers."""

import numpy as np
from sklearn.utils import check_random_state

from ._base import BilevelProblem


class QuadraticBilevelProblem(BilevelProblem):
    """Quadratic inner and outer objectives written as finite sums.

    After ``000`` appendix F.1, with sums so that minibatches make sense::

        G_i(z, x) = (a_i.z)^2 / 2 + (a_i.z)(b_i.x) + mu ||z||^2 / 2
        F_j(z, x) = c_j.z + (f_j.x)^2 / 2 + nu ||x||^2 / 2

    so that ``d11 G = A_g = A^T A / n + mu I``, ``d21 G = B^T A / n`` and
    ``z*(x) = -A_g^{-1} (A^T B / n) x``; ``h`` is a strongly convex quadratic
    in ``x``.

    Parameters
    ----------
    A : ndarray of shape (n_train, n_inner)
    B : ndarray of shape (n_train, n_outer)
    C : ndarray of shape (n_val, n_inner)
    Fx : ndarray of shape (n_val, n_outer)
    mu, nu : float
        Ridge terms of the inner and outer objectives (positive).
    """

    def __init__(self, A, B, C, Fx, mu=1.0, nu=1.0):
        self.A, self.B, self.C, self.Fx = (np.asarray(M, dtype=float) for M in (A, B, C, Fx))
        self.mu, self.nu = float(mu), float(nu)
        self.n_train, self.n_inner = self.A.shape
        self.n_val, self.n_outer = self.Fx.shape
        if self.B.shape != (self.n_train, self.n_outer) or self.C.shape != (
            self.n_val, self.n_inner
        ):
            raise ValueError("A, B, C and Fx have inconsistent shapes.")

    def _train(self, rows):
        if rows is None:
            return self.A, self.B
        return self.A[rows], self.B[rows]

    def _val(self, rows):
        if rows is None:
            return self.C, self.Fx
        return self.C[rows], self.Fx[rows]

    def inner_value(self, z, x, rows=None):
        A, B = self._train(rows)
        az = A @ z
        return np.mean(0.5 * az**2 + az * (B @ x)) + 0.5 * self.mu * z @ z

    def inner_grad(self, z, x, rows=None):
        A, B = self._train(rows)
        return A.T @ (A @ z + B @ x) / len(A) + self.mu * z

    def inner_hvp(self, z, x, v, rows=None):
        A, _ = self._train(rows)
        return A.T @ (A @ v) / len(A) + self.mu * v

    def inner_cross(self, z, x, v, rows=None):
        A, B = self._train(rows)
        return B.T @ (A @ v) / len(A)

    def inner_l2(self, x):
        return np.full(self.n_inner, self.mu)

    def sample_smoothness(self, x):
        return (self.A**2).sum(axis=1)

    def outer_value(self, z, x, rows=None):
        C, Fx = self._val(rows)
        return np.mean(C @ z + 0.5 * (Fx @ x) ** 2) + 0.5 * self.nu * x @ x

    def outer_grad(self, z, x, rows=None):
        C, _ = self._val(rows)
        return C.mean(axis=0)

    def outer_grad_x(self, z, x, rows=None):
        _, Fx = self._val(rows)
        return Fx.T @ (Fx @ x) / len(Fx) + self.nu * x

    # -- closed forms --------------------------------------------------------

    def _inner_hessian(self):
        return self.A.T @ self.A / self.n_train + self.mu * np.eye(self.n_inner)

    def _cross_matrix(self):
        """``d21 G`` as an (n_outer, n_inner) matrix."""
        return self.B.T @ self.A / self.n_train

    def _outer_hessian_x(self):
        return self.Fx.T @ self.Fx / self.n_val + self.nu * np.eye(self.n_outer)

    def inner_solution(self, x):
        """Return ``z*(x)``."""
        return -np.linalg.solve(self._inner_hessian(), self._cross_matrix().T @ x)

    def linear_system_solution(self, x):
        """Return ``v*(x) = -[d11 G]^{-1} d1 F`` (independent of ``x`` here)."""
        return -np.linalg.solve(self._inner_hessian(), self.C.mean(axis=0))

    def value(self, x):
        """Return ``h(x) = F(z*(x), x)``."""
        return self.outer_value(self.inner_solution(x), x)

    def hypergradient(self, x):
        """Return ``grad h(x)``."""
        return self.outer_grad_x(None, x) + self._cross_matrix() @ self.linear_system_solution(x)

    def solution(self):
        """Return the minimizer ``x*`` of ``h``."""
        return -np.linalg.solve(
            self._outer_hessian_x(), self._cross_matrix() @ self.linear_system_solution(None)
        )


def make_quadratic_problem(n_inner=20, n_outer=10, n_train=200, n_val=100, mu=0.1,
                           nu=0.1, random_state=None):
    """Draw a random :class:`QuadraticBilevelProblem`.

    Parameters
    ----------
    n_inner, n_outer : int
        Dimensions of ``z`` and ``x``.
    n_train, n_val : int
        Number of terms of the inner and outer sums.
    mu, nu : float
        Ridge terms, which set the strong convexity of both levels.
    random_state : int, RandomState instance or None
        Seed of the draw.
    """
    rng = check_random_state(random_state)
    return QuadraticBilevelProblem(
        A=rng.standard_normal((n_train, n_inner)),
        B=rng.standard_normal((n_train, n_outer)) / np.sqrt(n_outer),
        C=rng.standard_normal((n_val, n_inner)) + 1.0,
        Fx=rng.standard_normal((n_val, n_outer)),
        mu=mu,
        nu=nu,
    )
