"""The stochastic solvers against closed forms and the reference solver."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from skbilevel.datasets import data_available, load_ijcnn1
from skbilevel.problems import FeatureL2, LinearBilevelProblem, ScalarL2, make_quadratic_problem
from skbilevel.solvers import (
    SABA,
    SOLVERS,
    AmIGO,
    BatchStream,
    DivergenceWarning,
    get_solver,
    solve_reference,
)
from skbilevel.solvers._sampling import _fisher_yates, permutation

#: Epoch budgets that let every solver meet the targets below with defaults.
QUADRATIC_EPOCHS = {"soba": 1500, "saba": 1500, "amigo": 2000, "sid": 25000, "stocbio": 20000,
                    "aid": 500, "itd": 10000}
LOGISTIC_EPOCHS = {"soba": 150, "saba": 60, "amigo": 300, "sid": 4000, "stocbio": 2000,
                   "aid": 2000, "itd": 5000}


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
    assert len(stopped.history["epoch"]) == 2  # the start, and the first epoch


@pytest.mark.parametrize("name", SOLVERS)
def test_recovers_from_a_huge_step(name, logistic, exact_h):
    problem, h0, h_star = logistic
    solver = get_solver(name, step_size=1e4)
    with pytest.warns(DivergenceWarning, match="diverged"):
        result = solver.solve(problem, max_epochs=LOGISTIC_EPOCHS[name], random_state=0)
    assert np.isfinite(result.x).all() and np.isfinite(result.z).all()
    default = get_solver(name).solve(problem, max_epochs=1).history["inner_step"][0]
    assert result.history["inner_step"][-1] <= default
    assert exact_h(problem, result.x) - h_star <= 1e-2 * (h0 - h_star)


def test_saba_converges_at_fixed_steps_where_soba_plateaus(scalar_logistic, exact_h):
    """Variance reduction: at the same fixed steps SABA's gap keeps shrinking,
    while SOBA's stalls at the noise floor of its estimates.

    On one scalar strength: with per-feature strengths, the hypergradient of
    a coordinate driven towards a bound shrinks like ``exp(x_k)``, and one
    fixed outer step needs thousands of epochs there, for both solvers.
    """
    problem, h0, h_star = scalar_logistic
    last_gaps = {}
    for name in ("saba", "soba"):
        gaps = []
        get_solver(name, outer_step_size=1.0).solve(
            problem, max_epochs=250, random_state=0,
            callback=lambda state: gaps.append(exact_h(problem, state.x) - h_star),
        )
        last_gaps[name] = max(gaps[150:]) / (h0 - h_star)
    assert last_gaps["saba"] <= 1e-5
    assert last_gaps["soba"] > 1e-5


def _ijcnn1_problem(fit_intercept):
    """IJCNN1's per-feature problem (the benchmarks' split); skips without the data."""
    if not data_available("ijcnn1"):
        pytest.skip(reason="the ijcnn1 files are not in the data folder (set SKBILEVEL_DATA)")
    data = load_ijcnn1(dense=True)
    return LinearBilevelProblem(data.X_train, data.y_train, data.X_val, data.y_val,
                                hyperparams=FeatureL2(), fit_intercept=fit_intercept)


@pytest.fixture(scope="module")
def ijcnn1_no_intercept(exact_h):
    """IJCNN1 without intercept, and ``h*``: at ``x = 0`` the hypergradient of
    one strength is orders of magnitude above the others."""
    problem = _ijcnn1_problem(fit_intercept=False)
    return problem, exact_h(problem, solve_reference(problem, tol=1e-6).x)


def test_soba_diagonal_outer_step_moves_every_strength(ijcnn1_no_intercept, exact_h):
    """One step sized on the largest hypergradient leaves the other strengths
    still, on a plateau 0.2 above ``h*``; SOBA's diagonal default moves every
    coordinate.
    """
    problem, h_star = ijcnn1_no_intercept
    default, on_largest = get_solver("soba"), get_solver("soba")
    on_largest.diagonal_outer_step = False
    default_gap, on_largest_gap = (
        exact_h(problem, solver.solve(problem, max_epochs=30, random_state=0).x) - h_star
        for solver in (default, on_largest)
    )
    assert default_gap <= 1e-2
    assert on_largest_gap > 0.1


class _OneStepAmIGO(AmIGO):
    """AmIGO with one outer step for all coordinates, even on strengths."""

    def _uses_coordinate_steps(self, problem):
        return False


def test_double_loop_steps_per_strength(ijcnn1_no_intercept, exact_h):
    """The double-loop solvers take per-coordinate steps on strengths: one
    step sized on the largest hypergradient stays on the plateau."""
    problem, h_star = ijcnn1_no_intercept
    default_gap, one_step_gap = (
        exact_h(problem, solver.solve(problem, max_epochs=40, random_state=0).x) - h_star
        for solver in (AmIGO(), _OneStepAmIGO())
    )
    assert default_gap <= 1e-2
    assert one_step_gap > 0.1


def test_double_loop_iteration_restarts_where_the_level_moves_x():
    """On IJCNN1 with intercept, the common level moves ``x`` inside AmIGO's
    outer iterations; a linear system continued with the strengths of the old
    ``x`` grew until AmIGO diverged (at epoch 7, five times in a row)."""
    problem = _ijcnn1_problem(fit_intercept=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        result = AmIGO().solve(problem, max_epochs=10, random_state=0)
    assert result.x.min() < -1.0  # the level moved


@pytest.mark.xfail(strict=True, reason=(
    "SABA on small nearly separable data: four iterations per epoch, x runs to "
    "the lower bound faster than z can follow; measured h(x_T) = 1.38 against "
    "h(x_0) = 0.258 and h* = 0.0037 (batch sizes 64, 16 and 4 alike)"))
def test_saba_on_small_nearly_separable_data(exact_h):
    """A fold of breast_cancer (213 rows, 30 standardized features)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
    X, y = StandardScaler().fit_transform(X), 2.0 * y - 1.0
    train, val = next(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    problem = LinearBilevelProblem(X[train], y[train], X[val], y[val])
    h0 = exact_h(problem, np.zeros(problem.n_outer))
    h_star = solve_reference(problem, tol=1e-6, max_iter=200).history["value"][-1]
    result = get_solver("saba").solve(problem, max_epochs=100, random_state=0)
    assert exact_h(problem, result.x) - h_star <= 1e-2 * (h0 - h_star)


@pytest.mark.parametrize("name", SOLVERS)
def test_integer_bounds(name, logistic):
    """Bounds given as integers (a user's ``(-5, 5)``) keep ``x`` in the box."""
    problem = logistic[0]
    result = get_solver(name, bounds=(-5, 5)).solve(problem, max_epochs=3, random_state=0)
    assert np.isfinite(result.x).all()
    assert result.x.min() >= -5 and result.x.max() <= 5


def test_batch_stream_covers_each_row_once_per_pass():
    stream = BatchStream(10, 4, np.random.default_rng(0))
    indices, offsets = stream.take(6)
    np.testing.assert_array_equal(np.diff(offsets), [4, 4, 2, 4, 4, 2])
    first, second = indices[:10], indices[10:]
    np.testing.assert_array_equal(np.sort(first), np.arange(10))
    np.testing.assert_array_equal(np.sort(second), np.arange(10))
    assert not np.array_equal(first, second)


def test_permutation_draws_every_order_equally_often():
    rng = np.random.default_rng(0)
    draws = np.array([permutation(4, rng) for _ in range(24000)])
    np.testing.assert_array_equal(np.sort(draws, axis=1), np.tile(np.arange(4), (24000, 1)))
    _, counts = np.unique(draws, axis=0, return_counts=True)
    assert len(counts) == 24
    # Chi-square statistic against 1,000 of each order; 49.7 is the 0.999
    # quantile of the distribution with 23 degrees of freedom.
    assert np.sum((counts - 1000.0) ** 2 / 1000.0) < 49.7
    # Every row reaches every position: the first rows of 35,000 are spread.
    big = permutation(35000, rng)
    np.testing.assert_array_equal(np.sort(big), np.arange(35000))
    assert abs(np.mean(np.flatnonzero(big < 100)) - 17500) < 3500


def test_permutation_is_reproducible_and_seed_dependent():
    first, again, other = (permutation(1000, np.random.default_rng(seed)) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(ValueError, match="At most 2\\*\\*32 - 1 rows"):
        permutation(1 << 32, np.random.default_rng(0))


def _splitmix_fisher_yates(n, seed):
    """The shuffle of ``_fisher_yates`` in one plain loop, with Python integers."""
    mask = (1 << 64) - 1
    perm, state = list(range(n)), seed
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & mask
        r = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        r = ((r ^ (r >> 27)) * 0x94D049BB133111EB) & mask
        r ^= r >> 31
        j = (r * (i + 1)) >> 64
        perm[i], perm[j] = perm[j], perm[i]
    return perm


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 600])
def test_fisher_yates_blocks_give_the_one_loop_shuffle(n):
    """Partners drawn by blocks (of 8 here, the last one short), then swapped."""
    for seed in (0, 12345, 2 ** 64 - 1):
        compiled, python = np.arange(n), np.arange(n)
        _fisher_yates(compiled, np.uint64(seed), np.empty(8, dtype=np.int64))
        with np.errstate(over="ignore"):  # the uint64 arithmetic wraps by design
            _fisher_yates.py_func(python, np.uint64(seed), np.empty(8, dtype=np.int64))
        expected = _splitmix_fisher_yates(n, seed)
        np.testing.assert_array_equal(compiled, expected)
        np.testing.assert_array_equal(python, expected)


def test_batch_stream_take_gives_the_batches_of_next():
    """Whole passes (3 batches, from the start of a pass) and any other counts."""
    taken, drawn = (BatchStream(10, 4, np.random.default_rng(0)) for _ in range(2))
    for n_batches in (3, 5, 1, 3, 0, 7, 3):
        indices, offsets = taken.take(n_batches)
        batches = [drawn.next() for _ in range(n_batches)]
        assert len(offsets) == n_batches + 1
        for t, batch in enumerate(batches):
            np.testing.assert_array_equal(indices[offsets[t]:offsets[t + 1]], batch)


def test_validation_batch_sizes():
    """SABA scales its validation batches to the splits (one pass over each per epoch)."""
    problem = LinearBilevelProblem(np.eye(40, 3), np.tile([1.0, -1.0], 20),
                                   np.eye(10, 3), np.tile([1.0, -1.0], 5))
    assert get_solver("saba", batch_size=8)._val_batch_size(problem) == 2
    assert get_solver("saba", batch_size=1)._val_batch_size(problem) == 1  # at least one row
    assert get_solver("soba", batch_size=8)._val_batch_size(problem) == 8
    for name in ("saba", "soba"):
        assert get_solver(name, batch_size=8, val_batch_size=3)._val_batch_size(problem) == 3
        with pytest.raises(ValueError, match="val_batch_size must be at least 1"):
            get_solver(name, val_batch_size=0).solve(problem, max_epochs=1)
    state = SABA(batch_size=8)._initialize(problem, np.zeros(problem.n_outer),
                                           np.random.default_rng(0))
    assert state.val.batch_size == 2 and state.val.batches_per_pass() == 5
    assert state.train.batches_per_pass() == 5


def test_unknown_solver():
    with pytest.raises(ValueError, match="solver must be one of"):
        get_solver("adam")


def test_saba_first_epoch_fills_its_memories_unchecked():
    """From empty SAGA memories an epoch may raise the inner gradient: no divergence."""
    rng = np.random.default_rng(0)
    X = sp.random(600, 3000, density=0.01, random_state=0, format="csr")
    X = sp.diags(1 / np.sqrt(X.multiply(X).sum(1).A.ravel())) @ X  # tf-idf-like rows
    y = rng.integers(0, 5, 600).astype(float)
    problem = LinearBilevelProblem(X[:400], y[:400], X[400:], y[400:], loss="multinomial",
                                   hyperparams=ScalarL2())
    x0 = np.zeros(1)
    solver = SABA()
    state = solver._initialize(problem, x0.copy(), np.random.default_rng(0))
    state.inner_step, state.outer_step, state.radius = solver._default_inner_step(
        problem, state), 0.0, None
    before = np.linalg.norm(problem.inner_grad(state.z, x0))
    solver._kernel_epoch(problem, state, state.memory)
    assert np.linalg.norm(problem.inner_grad(state.z, x0)) > 2 * before
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        SABA().solve(problem, x0, max_epochs=5, random_state=0)
    strict = SABA()
    strict.empty_memory_start = False  # held to the gradient test from the start
    with pytest.warns(DivergenceWarning):
        strict.solve(problem, x0, max_epochs=5, random_state=0)


def _sparse_features_of_spread_scales(spread_penalty):
    """200 sparse features whose scales span three decades, with a spread penalty.

    The penalty is centred on the features' scales, and the best common
    level of ``x`` is near -7 (strengths of about ``1e-3``).
    """
    rng = np.random.default_rng(0)
    X = sp.random(1300, 200, density=0.05, random_state=rng, format="csr")
    X.data = rng.lognormal(size=X.data.size)
    X = sp.csr_matrix(X @ sp.diags(10.0 ** rng.uniform(-1.5, 1.5, 200)))
    coef = rng.standard_normal(200) / (2 * np.sqrt(X.multiply(X).mean(axis=0).A1))
    y = np.where(X @ coef + 0.5 * rng.standard_normal(1300) > 0, 1.0, -1.0)
    return LinearBilevelProblem(X[:1000], y[:1000], X[1000:], y[1000:],
                                hyperparams=FeatureL2(), spread_penalty=spread_penalty)


def test_saba_moves_the_common_level_of_many_strengths(exact_h):
    """The level of ``x`` moves even when no coordinate's sign shows it.

    At ``x0 = 0`` the spread penalty sets the sign of most coordinates'
    estimates. Measured without the level's own steps: the mean of ``x``
    stayed within 0.1 of 0 and the relative gap at 7.6e-2 (seeds 0 to 2);
    with them the mean reaches -7.8 and the gap 1.5e-2.
    """
    problem = _sparse_features_of_spread_scales(1 / 300)
    x0 = np.zeros(200)
    x_star = solve_reference(problem, x0, tol=1e-6).x
    h0, h_star = exact_h(problem, x0), exact_h(problem, x_star)
    result = SABA().solve(problem, x0, max_epochs=30, random_state=0)
    assert abs(result.x.mean() - x_star.mean()) < 1.5
    assert exact_h(problem, result.x) - h_star <= 2.5e-2 * (h0 - h_star)


def test_saba_under_a_stiff_spread_penalty(exact_h):
    """A spread penalty worth 10,000 validation rows per strength: steps stay stable.

    The strengths are then tied to the features' scales and only their
    level is free; the gap is measured against that of the penalty's centre
    at level 0. Measured: 0.10 of it, and 89 times it when the outer steps
    were not held below ``1 / spread_penalty`` (the coordinates swung across
    their trust boxes and the spread term ended 33 above ``h*``).
    """
    problem = _sparse_features_of_spread_scales(1e4 / 300)
    x0 = np.zeros(200)
    centre = problem.spread_offset - problem.spread_offset.mean()
    x_star = solve_reference(problem, x0, tol=1e-6).x
    h_centre, h_star = exact_h(problem, centre), exact_h(problem, x_star)
    result = SABA().solve(problem, x0, max_epochs=30, random_state=0)
    assert exact_h(problem, result.x) - h_star <= 0.2 * (h_centre - h_star)
