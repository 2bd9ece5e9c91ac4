"""The deterministic reference solver and its full-batch building blocks."""

import time

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge

from skbilevel.datasets import data_available, load_ijcnn1
from skbilevel.problems import (
    FeatureL2,
    GroupedL2,
    LinearBilevelProblem,
    SampleWeights,
    ScalarL2,
    make_quadratic_problem,
)
from skbilevel.solvers import (
    hypergradient,
    solve_inner,
    solve_linear_system,
    solve_reference,
)


def _classification(n_train=80, n_val=50, n_features=6, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    coef = rng.standard_normal((n_classes, n_features))
    X = rng.standard_normal((n_train + n_val, n_features))
    scores = X @ coef.T + 0.8 * rng.standard_normal((n_train + n_val, n_classes))
    if n_classes == 2:
        y = np.where(scores[:, 0] > scores[:, 1], 1.0, -1.0)
    else:
        y = scores.argmax(axis=1)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _exact_h(problem, x, tol=1e-12):
    z, _, converged = solve_inner(problem, x, np.zeros(problem.n_inner), tol)
    assert converged
    return problem.outer_value(z, x), z


def _exact_hypergradient(problem, x, tol=1e-12):
    _, z = _exact_h(problem, x, tol)
    v, _ = solve_linear_system(problem, z, x, np.zeros(problem.n_inner), tol)
    return hypergradient(problem, z, x, v)


HYPERGRADIENT_CASES = {
    "scalar": dict(loss="logistic", hyperparams=ScalarL2()),
    "per_feature": dict(loss="logistic", hyperparams=FeatureL2()),
    "per_group": dict(loss="logistic", hyperparams=GroupedL2([0, 0, 1, 1, 2, 2])),
    "per_sample": dict(loss="multinomial", hyperparams=SampleWeights(l2=0.05)),
    "per_feature_squared": dict(loss="squared", hyperparams=FeatureL2()),
}


@pytest.mark.parametrize("case", HYPERGRADIENT_CASES)
@pytest.mark.parametrize("sparse", [False, True])
def test_hypergradient_matches_finite_differences(case, sparse):
    kwargs = HYPERGRADIENT_CASES[case]
    n_classes = 3 if kwargs["loss"] == "multinomial" else 2
    X, y, X_val, y_val = _classification(n_classes=n_classes, seed=1)
    if kwargs["loss"] == "squared":
        rng = np.random.default_rng(2)
        y, y_val = X @ rng.standard_normal(6), X_val @ rng.standard_normal(6)
    if sparse:
        X, X_val = sp.csr_matrix(X), sp.csr_matrix(X_val)
    problem = LinearBilevelProblem(X, y, X_val, y_val, **kwargs)
    rng = np.random.default_rng(3)
    x = rng.uniform(-2.0, 0.5, problem.n_outer)

    grad = _exact_hypergradient(problem, x)
    eps = 1e-5
    fd = np.array([
        (_exact_h(problem, x + eps * e)[0] - _exact_h(problem, x - eps * e)[0]) / (2 * eps)
        for e in np.eye(problem.n_outer)
    ])
    assert np.linalg.norm(grad - fd) <= 1e-5 * np.linalg.norm(fd)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_inner_solution_matches_logistic_regression(fit_intercept, n_classes):
    X, y, X_val, y_val = _classification(n_train=120, n_classes=n_classes, seed=4)
    loss = "logistic" if n_classes == 2 else "multinomial"
    problem = LinearBilevelProblem(
        X, y, X_val, y_val, loss=loss, hyperparams=ScalarL2(), fit_intercept=fit_intercept
    )
    x = np.array([np.log(0.05)])
    z, _, converged = solve_inner(problem, x, np.zeros(problem.n_inner), 1e-12)
    assert converged

    C = 1.0 / (problem.n_train * np.exp(x[0]))
    clf = LogisticRegression(C=C, fit_intercept=fit_intercept, tol=1e-14, max_iter=10_000)
    clf.fit(X, y)
    expected = clf.coef_
    if fit_intercept:
        expected = np.column_stack([clf.coef_, clf.intercept_])
    np.testing.assert_allclose(z.reshape(problem.coef_shape), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_inner_solution_matches_ridge(fit_intercept):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((100, 7))
    y = X @ rng.standard_normal(7) + 0.3 * rng.standard_normal(100) + 2.0
    problem = LinearBilevelProblem(
        X, y, X[:10], y[:10], loss="squared", hyperparams=ScalarL2(),
        fit_intercept=fit_intercept,
    )
    x = np.array([np.log(0.3)])
    z, _, converged = solve_inner(problem, x, np.zeros(problem.n_inner), 1e-12)
    assert converged

    ridge = Ridge(alpha=problem.n_train * np.exp(x[0]), fit_intercept=fit_intercept)
    ridge.fit(X, y)
    expected = np.append(ridge.coef_, ridge.intercept_) if fit_intercept else ridge.coef_
    np.testing.assert_allclose(z, expected, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_recovers_quadratic_solution(seed):
    problem = make_quadratic_problem(random_state=seed)
    # The closed forms agree with the oracles.
    x = np.random.default_rng(seed).standard_normal(problem.n_outer)
    z = problem.inner_solution(x)
    assert np.linalg.norm(problem.inner_grad(z, x)) < 1e-12
    np.testing.assert_allclose(_exact_hypergradient(problem, x), problem.hypergradient(x),
                               rtol=1e-9)

    result = solve_reference(problem, bounds=None, tol=1e-10)
    x_star = problem.solution()
    assert result.converged
    assert np.linalg.norm(result.x - x_star) <= 1e-6 * np.linalg.norm(x_star)
    np.testing.assert_allclose(result.z, problem.inner_solution(x_star), rtol=1e-5)
    np.testing.assert_allclose(result.v, problem.linear_system_solution(x_star), rtol=1e-6)
    assert result.history["value"][-1] == pytest.approx(problem.value(x_star), abs=1e-10)


def test_reference_history_and_callback():
    X, y, X_val, y_val = _classification(seed=6)
    problem = LinearBilevelProblem(X, y, X_val, y_val, hyperparams=FeatureL2())
    result = solve_reference(problem, tol=1e-8)
    history = result.history
    assert set(history) == {"time", "value", "grad_norm", "inner_iter", "linear_iter"}
    assert len({len(column) for column in history.values()}) == 1
    assert len(history["time"]) == result.n_iter + 1
    assert np.all(np.diff(history["time"]) >= 0)
    assert np.all(np.diff(history["inner_iter"]) >= 0)
    assert history["value"][-1] < history["value"][0]
    # h at the returned x is what the history reports last.
    assert _exact_h(problem, result.x)[0] == pytest.approx(history["value"][-1], abs=1e-8)

    stopped = solve_reference(problem, tol=1e-8, callback=lambda x, value: True)
    assert stopped.n_iter == 1
    assert not stopped.converged


def test_reference_time_limit_returns_last_accepted_iterate():
    """Once the budget is spent no evaluation of ``h`` starts, line searches included."""
    X, y, X_val, y_val = _classification(seed=6)
    problem = LinearBilevelProblem(X, y, X_val, y_val, hyperparams=FeatureL2())
    full = solve_reference(problem, tol=1e-8)
    assert full.n_iter >= 5

    spent = solve_reference(problem, tol=1e-8, time_limit=1e-9)
    assert spent.message == "time limit reached" and not spent.converged
    assert spent.n_iter == 0
    np.testing.assert_array_equal(spent.x, np.zeros(problem.n_outer))

    # Each iteration waits 0.2 s in the callback: a 0.5 s budget ends the run
    # after at most three iterations, whatever the machine's speed.
    partial = solve_reference(problem, tol=1e-8, time_limit=0.5,
                              callback=lambda x, value: time.sleep(0.2))
    assert partial.message == "time limit reached"
    assert 1 <= partial.n_iter <= 3 < full.n_iter
    assert len(partial.history["value"]) == partial.n_iter + 1
    # The returned x, z and v belong together: z solves the inner problem at x.
    h, z = _exact_h(problem, partial.x)
    assert h == pytest.approx(partial.history["value"][-1], abs=1e-8)
    np.testing.assert_allclose(partial.z, z, atol=1e-8)


def test_reference_rejects_wrong_x0():
    X, y, X_val, y_val = _classification(seed=7)
    problem = LinearBilevelProblem(X, y, X_val, y_val, hyperparams=FeatureL2())
    with pytest.raises(ValueError, match="x0 must have shape"):
        solve_reference(problem, x0=np.zeros(3))


@pytest.mark.skipif(not data_available("ijcnn1"), reason="IJCNN1 data folder absent")
def test_reference_lowers_validation_loss_on_ijcnn1():
    data = load_ijcnn1(dense=True)
    problem = LinearBilevelProblem(
        data.X_train, data.y_train, data.X_val, data.y_val, hyperparams=FeatureL2()
    )
    result = solve_reference(problem, max_iter=10)
    value = result.history["value"]
    print(
        f"IJCNN1 reference, 10 outer iterations in {result.history['time'][-1]:.1f} s: "
        f"validation log-loss {value[0]:.4f} -> {value[-1]:.4f}"
    )
    assert value[-1] < value[0] - 0.05
    z = result.z
    assert problem.outer_value(z, result.x) == pytest.approx(value[-1], abs=1e-6)
