import numpy as np
import pytest

N_TRAIN, N_VAL, N_FEATURES, N_CLASSES = 30, 20, 5, 3


def _labels(rng, loss, n):
    if loss == "logistic":
        return rng.permutation(np.arange(n) % 2) * 2.0 - 1.0
    if loss == "multinomial":
        return rng.permutation(np.arange(n) % N_CLASSES).astype(np.float64)
    return rng.standard_normal(n)


@pytest.fixture
def make_data():
    """Return a factory of small random splits ``(X_train, y_train, X_val, y_val)``.

    About 40% of the features are zero, so that CSR versions are really sparse;
    every class is present in both splits.
    """

    def make(loss, seed=0, n_train=N_TRAIN, n_val=N_VAL, n_features=N_FEATURES):
        rng = np.random.default_rng(seed)

        def design(n):
            X = rng.standard_normal((n, n_features))
            X[rng.random((n, n_features)) < 0.4] = 0.0
            return X

        X_train, X_val = design(n_train), design(n_val)
        return X_train, _labels(rng, loss, n_train), X_val, _labels(rng, loss, n_val)

    return make


@pytest.fixture(scope="session")
def logistic():
    """A small per-feature logistic problem with ``h(x0)`` and the reference ``h*``."""
    from skbilevel.problems import FeatureL2

    return _logistic_with_reference(FeatureL2(), tol=1e-8)


@pytest.fixture(scope="session")
def scalar_logistic():
    """The data of ``logistic`` with one scalar strength, ``h(x0)`` and ``h*``."""
    from skbilevel.problems import ScalarL2

    return _logistic_with_reference(ScalarL2(), tol=1e-10)


def _logistic_with_reference(hyperparams, tol):
    """The problem on :func:`_classification` (half train, half validation), h0, h*."""
    from skbilevel.problems import LinearBilevelProblem
    from skbilevel.solvers import solve_reference

    X, y = _classification()
    problem = LinearBilevelProblem(X[:1000], y[:1000], X[1000:], y[1000:],
                                   hyperparams=hyperparams)
    reference = solve_reference(problem, tol=tol)
    return problem, reference.history["value"][0], reference.history["value"][-1]


def _classification():
    """2,000 x 20 synthetic rows (5 informative features), labels in {-1, +1}.

    No redundant (collinear) features: with them, per-feature strengths driven
    to ``exp(-15)`` leave the inner problem singular, and the outer problem
    has several local minima (runs end up to 1e-2 relative above and below
    the reference's value), so a gap to ``h*`` would measure the basin a run
    falls in rather than its convergence. Without them, the reference started
    from random points agrees with ``h*`` to 1e-4 relative.
    """
    from sklearn.datasets import make_classification

    X, y = make_classification(2000, 20, n_informative=5, n_redundant=0, random_state=0)
    return X, 2.0 * y - 1.0


@pytest.fixture(scope="session")
def exact_h():
    """``h(x)`` with the inner problem solved to 1e-10."""
    from skbilevel.solvers import solve_inner

    def h(problem, x):
        z, _, converged = solve_inner(problem, x, np.zeros(problem.n_inner), 1e-10)
        assert converged
        return problem.outer_value(z, x)

    return h
