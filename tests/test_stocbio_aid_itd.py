"""stocBiO, AID and ITD: the Neumann series, the unrolled hypergradient, convergence."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from skbilevel.problems import (
    FeatureL2,
    LinearBilevelProblem,
    SampleWeights,
    make_quadratic_problem,
)
from skbilevel.solvers import hypergradient, solve_inner, solve_linear_system
from skbilevel.solvers.aid import AID, ITD, unrolled_hypergradient, unrolled_step
from skbilevel.solvers.stocbio import StocBiO, neumann_series


def _quadratic(mu=0.1):
    """The quadratic of ``tests/test_solvers.py``: batches of 64 are the full sums."""
    return make_quadratic_problem(n_train=50, n_val=30, mu=mu, random_state=0)


def _small_logistic(hyperparams):
    X, y = make_classification(90, 5, n_informative=3, random_state=1)
    y = 2.0 * y - 1.0
    return LinearBilevelProblem(X[:50], y[:50], X[50:], y[50:], hyperparams=hyperparams)


def _spread_x(problem):
    """Hyperparameters whose L2 strengths span exp(-3)..exp(3)."""
    return np.linspace(-3.0, 3.0, problem.n_outer)


def _exact(problem, x):
    z, _, converged = solve_inner(problem, x, np.zeros(problem.n_inner), 1e-12)
    assert converged
    v, _ = solve_linear_system(problem, z, x, np.zeros(problem.n_inner), 1e-13)
    return z, v


def _safe_step(problem, x):
    """``1 / max_i L_i``: every batch Hessian's data part has norm below its inverse."""
    return 1.0 / problem.sample_smoothness(x).max()






def _relative_error(x, x_star):
    return np.linalg.norm(x - x_star) / np.linalg.norm(x_star)


# -- the Neumann series (002 Algorithm 3) --------------------------------------


def test_neumann_series_is_the_truncated_sum():
    problem = _quadratic()
    x = np.linspace(-1.0, 1.0, problem.n_outer)
    z = problem.inner_solution(x)
    b, step, n_terms = problem.outer_grad(z, x), 0.05, 7
    # v_Q = -step sum_{q<=Q} M^q P^-1 b, M = P^-1 (I - step A^T A / n), P = 1 + step mu
    P = 1.0 + step * problem.mu
    M = (np.eye(problem.n_inner) - step * problem.A.T @ problem.A / problem.n_train) / P
    expected = -step * sum(np.linalg.matrix_power(M, q) for q in range(n_terms + 1)) @ b / P
    v = neumann_series(problem, z, x, b, step, [None] * n_terms)
    np.testing.assert_allclose(v, expected, rtol=1e-12)


def test_neumann_series_converges_to_the_linear_system_solution():
    problem = _quadratic()
    x = np.linspace(-1.0, 1.0, problem.n_outer)
    z = problem.inner_solution(x)
    v = neumann_series(problem, z, x, problem.outer_grad(z, x), _safe_step(problem, x),
                       [None] * 4000)
    np.testing.assert_allclose(v, problem.linear_system_solution(x), rtol=1e-10)


def test_neumann_series_with_spread_l2_strengths():
    # The strengths enter as an exact preconditioner: the limit is still v*.
    problem = _small_logistic(FeatureL2())
    x = _spread_x(problem)
    z, v_star = _exact(problem, x)
    v = neumann_series(problem, z, x, problem.outer_grad(z, x), _safe_step(problem, x),
                       [None] * 6000)
    np.testing.assert_allclose(v, v_star, rtol=1e-8, atol=1e-12)


def test_neumann_series_with_a_batch_per_term_is_unbiased():
    # Independent Hessian batches: the mean estimate is the full-batch truncated series.
    problem = _quadratic()
    x = np.linspace(-1.0, 1.0, problem.n_outer)
    z = problem.inner_solution(x)
    b, step = problem.outer_grad(z, x), _safe_step(problem, x)
    rng = np.random.default_rng(0)
    estimates = np.array([
        neumann_series(problem, z, x, b, step,
                       [rng.choice(problem.n_train, 5, replace=False) for _ in range(3)])
        for _ in range(4000)
    ])
    full = neumann_series(problem, z, x, b, step, [None] * 3)
    stderr = estimates.std(axis=0) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - full) <= 5 * stderr + 1e-15)
    assert np.all(stderr > 0)


# -- ITD's reverse mode ----------------------------------------------------------


def _unrolled_loss(problem, x_new, x, z0, step, n_steps):
    """``F(z_T(x_new), x_new)`` with the preconditioner frozen at ``x``."""
    l2, z = problem.inner_l2(x), z0
    for _ in range(n_steps):
        z = unrolled_step(problem, z, x_new, l2, step)
    return problem.outer_value(z, x_new)


def _unrolling_case(case):
    """A problem and a point ``x`` for the tests of ITD's reverse mode."""
    if case == "quadratic":
        problem = _quadratic()
        return problem, np.linspace(-1.0, 1.0, problem.n_outer)
    problem = _small_logistic(FeatureL2() if case == "feature_l2" else SampleWeights())
    return problem, _spread_x(problem)


@pytest.mark.parametrize("case", ["quadratic", "feature_l2", "sample_weights"])
def test_unrolled_hypergradient_matches_finite_differences(case):
    problem, x = _unrolling_case(case)
    z0 = np.random.default_rng(0).standard_normal(problem.n_inner)
    step, n_steps = 2.0 / problem.sample_smoothness(x).mean(), 3
    grad, _, _ = unrolled_hypergradient(problem, x, z0, step, n_steps)
    eps = 1e-6
    numeric = np.array([
        (_unrolled_loss(problem, x + eps * e, x, z0, step, n_steps)
         - _unrolled_loss(problem, x - eps * e, x, z0, step, n_steps)) / (2 * eps)
        for e in np.eye(problem.n_outer)
    ])
    assert np.linalg.norm(grad - numeric) <= 1e-6 * np.linalg.norm(numeric)
    # Three steps from a random start are far from the implicit hypergradient.
    z_star, v_star = _exact(problem, x)
    assert not np.allclose(grad, hypergradient(problem, z_star, x, v_star), rtol=1e-2)


@pytest.mark.parametrize("case", ["quadratic", "feature_l2", "sample_weights"])
def test_unrolled_hypergradient_tends_to_the_hypergradient(case):
    problem, x = _unrolling_case(case)
    step = 2.0 / problem.sample_smoothness(x).mean()
    grad, z, v = unrolled_hypergradient(problem, x, np.zeros(problem.n_inner), step, 4000)
    z_star, v_star = _exact(problem, x)
    exact = hypergradient(problem, z_star, x, v_star)
    np.testing.assert_allclose(z, z_star, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(v, v_star, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(grad, exact, rtol=1e-8, atol=1e-10 * np.abs(exact).max())


# -- the solvers -------------------------------------------------------------------


def test_aid_reaches_the_quadratic_solution_to_1e8():
    problem = _quadratic()
    result = AID().solve(problem, max_epochs=500)
    assert _relative_error(result.x, problem.solution()) <= 1e-8


def test_itd_reaches_the_quadratic_solution_to_1e8_unrolling_as_needed():
    # The unrolling lengthens until its bias is a fraction of the hypergradient:
    # far more steps when the inner problem is ill-conditioned.
    lengths = {}
    for mu, max_epochs in ((0.1, 60000), (10.0, 3000)):
        problem = _quadratic(mu)
        seen = []
        result = ITD().solve(problem, max_epochs=max_epochs,
                             callback=lambda state: seen.append(state.n_terms))
        assert _relative_error(result.x, problem.solution()) <= 1e-8
        lengths[mu] = max(seen)
    assert lengths[10.0] <= 64 < 512 <= lengths[0.1]


def test_stocbio_reaches_the_quadratic_solution():
    problem = _quadratic()
    result = StocBiO().solve(problem, max_epochs=25000, random_state=0)
    assert _relative_error(result.x, problem.solution()) <= 1e-4


class _CountingProblem:
    """Counts the training rows of the inner oracles called while ``counting``."""

    def __init__(self, problem):
        self._problem, self.samples, self.counting = problem, 0, False

    def __getattr__(self, name):
        return getattr(self._problem, name)

    def _count(self, rows):
        if self.counting:
            self.samples += self._problem.n_train if rows is None else len(rows)

    def inner_grad(self, z, x, rows=None):
        self._count(rows)
        return self._problem.inner_grad(z, x, rows)

    def inner_hvp(self, z, x, v, rows=None):
        self._count(rows)
        return self._problem.inner_hvp(z, x, v, rows)

    def inner_cross(self, z, x, v, rows=None):
        self._count(rows)
        return self._problem.inner_cross(z, x, v, rows)

    def inner_oracles(self, z, x, v, rows=None):
        self._count(rows)  # one pass gives the three
        return self._problem.inner_oracles(z, x, v, rows)


@pytest.mark.parametrize("cls", [StocBiO, AID, ITD])
def test_epochs_count_every_inner_sample(cls, logistic):
    problem = _CountingProblem(logistic[0])

    class Counted(cls):
        def _epoch(self, problem, state):
            problem.counting = True
            try:
                return super()._epoch(problem, state)
            finally:
                problem.counting = False

    result = Counted(outer_step_size=1e-3).solve(problem, max_epochs=40, random_state=0)
    epochs = result.history["epoch"]
    assert problem.samples == epochs[-1] * problem.n_train
    assert np.all(result.x != 0)  # outer steps were made within the budget
    if cls is not AID:  # AID's CG solve is one piece of up to 21 epochs
        # One epoch, up to a piece (4 batches at most), once the first inner
        # steps have halved the inner gradient.
        assert np.all(np.diff(epochs)[1:] <= 1 + 4 * 64 / problem.n_train)


def test_deterministic_solvers_ignore_the_seed(logistic):
    problem = logistic[0]
    for cls in (AID, ITD):
        first, other = (cls().solve(problem, max_epochs=60, random_state=seed)
                        for seed in (7, 8))
        assert not np.array_equal(first.x, np.zeros(problem.n_outer))
        np.testing.assert_array_equal(first.x, other.x)


@pytest.mark.parametrize("cls, params", [
    (StocBiO, dict(n_inner_steps=0)),
    (StocBiO, dict(n_neumann_terms=-1)),
    (StocBiO, dict(outer_batch_size=2.5)),
    (AID, dict(n_linear_steps=0)),
    (AID, dict(linear_tol=-1.0)),
    (ITD, dict(n_inner_steps=1.5)),
])
def test_invalid_parameters(cls, params):
    with pytest.raises(ValueError, match=next(iter(params))):
        cls(**params).solve(_quadratic(), max_epochs=1)
