"""The stochastic solvers against closed forms and the reference solver."""

import numpy as np
import pytest
from skbilevel.problems import make_quadratic_problem
from skbilevel.solvers import SOLVERS, BatchStream, DivergenceWarning, get_solver

#: Epoch budgets that let every solver meet the targets below with defaults.
QUADRATIC_EPOCHS = {"soba": 1500, "amigo": 2000, "sid": 25000, "stocbio": 20000,
                    "aid": 500, "itd": 10000}
LOGISTIC_EPOCHS = {"soba": 60, "amigo": 200, "sid": 4000, "stocbio": 2000,
                   "aid": 2000, "itd": 3000}



def _exact_quadratic():
    """The deterministic quadratic of ``000`` F.1: every batch is the full sum."""
    return make_quadratic_problem(n_train=50, n_val=30, random_state=0)






@pytest.mark.parametrize("name", SOLVERS)
def test_reaches_quadratic_solution(name):
    problem = _exact_quadratic()
    result = get_solver(name).solve(problem, max_epochs=QUADRATIC_EPOCHS[name],
                                    random_state=0)
    x_star = problem.solution()
    assert np.linalg.norm(result.x - x_star) <= 1e-4 * np.linalg.norm(x_star)


@pytest.mark.parametrize("name", SOLVERS)
def test_reduces_logistic_gap(name, logistic, exact_h):
    problem, h0, h_star = logistic
    result = get_solver(name).solve(problem, max_epochs=LOGISTIC_EPOCHS[name],
                                    random_state=0)
    assert exact_h(problem, result.x) - h_star <= 1e-2 * (h0 - h_star)


@pytest.mark.parametrize("name", SOLVERS)
def test_same_seed_same_result(name, logistic):
    problem = logistic[0]
    first, second, other = (
        get_solver(name).solve(problem, max_epochs=3, random_state=seed)
        for seed in (7, 7, 8)
    )
    for attribute in ("x", "z", "v"):
        np.testing.assert_array_equal(getattr(first, attribute), getattr(second, attribute))
    np.testing.assert_array_equal(first.history["value"], second.history["value"])
    if getattr(SOLVERS[name], "deterministic", False):
        np.testing.assert_array_equal(first.x, other.x)
    else:
        assert not np.array_equal(first.x, other.x)


@pytest.mark.parametrize("name", SOLVERS)
def test_history_and_budget(name, logistic):
    problem = logistic[0]
    result = get_solver(name).solve(problem, max_epochs=4, random_state=0)
    history = result.history
    assert {"time", "epoch", "value", "grad_norm", "inner_step", "outer_step"} <= set(history)
    assert len({len(column) for column in history.values()}) == 1
    assert history["epoch"][0] == 0 and 4 <= history["epoch"][-1] < 5
    assert np.all(np.diff(history["time"]) >= 0)
    assert result.message == "epoch budget reached"

    stopped = get_solver(name).solve(problem, max_epochs=50, random_state=0,
                                     callback=lambda state: True)
    assert stopped.message == "stopped by the callback"
    assert stopped.history["epoch"][-1] < 3


@pytest.mark.parametrize("name", SOLVERS)
def test_recovers_from_a_huge_step(name, logistic, exact_h):
    problem, h0, h_star = logistic
    solver = get_solver(name, step_size=1e4)
    with pytest.warns(DivergenceWarning, match="diverged"):
        result = solver.solve(problem, max_epochs=LOGISTIC_EPOCHS[name], random_state=0)
    assert np.isfinite(result.x).all() and np.isfinite(result.z).all()
    assert result.history["inner_step"][-1] <= 1e4 / 2**10
    # The recovered step stays ~10x the default one, whose noise floor is higher.
    assert exact_h(problem, result.x) - h_star <= 1e-1 * (h0 - h_star)


def test_batch_stream_covers_each_row_once_per_pass():
    stream = BatchStream(10, 4, np.random.default_rng(0))
    indices, offsets = stream.take(6)
    np.testing.assert_array_equal(np.diff(offsets), [4, 4, 2, 4, 4, 2])
    first, second = indices[:10], indices[10:]
    np.testing.assert_array_equal(np.sort(first), np.arange(10))
    np.testing.assert_array_equal(np.sort(second), np.arange(10))
    assert not np.array_equal(first, second)


def test_unknown_solver():
    with pytest.raises(ValueError, match="solver must be one of"):
        get_solver("adam")
