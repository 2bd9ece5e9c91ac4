"""The Numba path of SOBA and SABA on linear models against plain references."""

import numpy as np
import pytest
import scipy.sparse as sp

from skbilevel.problems import FeatureL2, GroupedL2, LinearBilevelProblem, SampleWeights
from skbilevel.solvers import SABA, SOBA, _linear_kernels, solve_inner, solve_linear_system
from skbilevel.solvers._linear_kernels import chunk_workspace, single_loop_chunk
from skbilevel.solvers._sampling import BatchStream


def _problem(hyperparams, sparse=False, loss="logistic", seed=0, spread_penalty=0.0,
             weights="random"):
    """A small problem; ``weights``: "random" sample weights of both splits, "ones" or "none"."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((150, 6))
    X[rng.random(X.shape) < 0.3] = 0.0
    if loss == "logistic":
        y = np.where(X @ rng.standard_normal(6) + rng.standard_normal(150) > 0, 1.0, -1.0)
    else:
        y = (X @ rng.standard_normal((6, 3)) + rng.standard_normal((150, 3))).argmax(1)
    X_train, X_val = (sp.csr_matrix(M) if sparse else M for M in (X[:100], X[100:]))
    sample_weight, val_sample_weight = {
        "random": (rng.uniform(0.5, 2.0, 100), rng.uniform(0.5, 2.0, 50)),
        "ones": (np.ones(100), np.ones(50)),
        "none": (None, None),
    }[weights]
    return LinearBilevelProblem(X_train, y[:100], X_val, y[100:], loss=loss,
                                hyperparams=hyperparams, sample_weight=sample_weight,
                                val_sample_weight=val_sample_weight,
                                spread_penalty=spread_penalty)


# Maps of the kernel tests: per-feature strengths, grouped strengths with
# fixed factors (feature 2 unpenalized, as the folds' intercepts), per-sample
# weights.
MAPS = pytest.mark.parametrize(
    "hyperparams",
    [FeatureL2(), GroupedL2([0, 1, 1, 2, 0, 2], scale=[1.0, 0.5, 0.0, 2.0, 1.0, 1.0]),
     SampleWeights(l2=0.1)],
    ids=["per_feature", "grouped_scaled", "per_sample"],
)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@MAPS
@pytest.mark.parametrize("decreasing", [False, True])
def test_soba_kernel_equals_oracle_loop(hyperparams, loss, sparse, decreasing):
    _assert_kernel_equals_oracle_loop(_problem(hyperparams, sparse, loss), decreasing)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    "hyperparams", [FeatureL2(), GroupedL2([0, 1, 1, 2, 0, 2])], ids=["per_feature", "grouped"]
)
def test_soba_kernel_takes_the_spread_penalty_as_the_oracles(hyperparams, sparse):
    problem = _problem(hyperparams, sparse, spread_penalty=0.5)
    _assert_kernel_equals_oracle_loop(problem, decreasing=False, x0=np.linspace(-2, 1, problem.n_outer))


def _assert_kernel_equals_oracle_loop(problem, decreasing, x0=None):
    """Three SOBA epochs by the Numba kernel and by the problem's oracles agree."""
    results = []
    for path in ("_kernel_epoch", "_oracle_epoch"):
        solver = SOBA(batch_size=16, step_size=0.3, outer_step_size=2.0,
                      decreasing=decreasing)
        start = np.full(problem.n_outer, -1.0) if x0 is None else x0.copy()
        state = solver._initialize(problem, start, np.random.default_rng(3))
        state.inner_step, state.outer_step = solver.step_size, solver.outer_step_size
        for _ in range(3):
            if path == "_kernel_epoch":
                solver._kernel_epoch(problem, state, solver_memory_none())
            else:
                solver._oracle_epoch(problem, state)
        results.append(state)
    kernel, oracle = results
    for name in ("x", "z", "v"):
        np.testing.assert_allclose(getattr(kernel, name), getattr(oracle, name),
                                   rtol=1e-10, atol=1e-12)


def solver_memory_none():
    from skbilevel.solvers.soba import _NO_MEMORY
    return _NO_MEMORY


@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@MAPS
def test_saba_kernel_converges_at_fixed_x(hyperparams, loss):
    """With the outer step at zero, SABA's z and v reach z*(x) and v*(x)."""
    problem = _problem(hyperparams, loss=loss)
    x = np.full(problem.n_outer, -1.0)
    z_star, _, _ = solve_inner(problem, x, np.zeros(problem.n_inner), 1e-13)
    v_star, _ = solve_linear_system(problem, z_star, x, np.zeros(problem.n_inner), 1e-13)
    solver = SABA(batch_size=10, outer_step_size=0.0)
    result = solver.solve(problem, x0=x, max_epochs=300, random_state=0)
    np.testing.assert_array_equal(result.x, x)
    np.testing.assert_allclose(result.z, z_star, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(result.v, v_star, rtol=1e-7, atol=1e-9)


def _saba_direct(problem, x, n_iter, batch_sizes, inner_step, outer_step, seed):
    """SABA with per-sample memories and a dense outer update, written plainly.

    ``batch_sizes`` are the training and validation batch sizes;
    ``inner_step`` is one step per inner coordinate.
    """
    rng = np.random.default_rng(seed)
    train, val = (BatchStream(n, size, rng)
                  for n, size in zip((problem.n_train, problem.n_val), batch_sizes))
    z, v, x = np.zeros(problem.n_inner), np.zeros(problem.n_inner), x.copy()
    memory = {name: {} for name in ("grad", "hvp", "cross", "val")}

    def saga(table, terms, n):
        estimate = sum(table.values(), np.zeros_like(next(iter(terms.values())))) / n
        for i, term in terms.items():
            estimate = estimate + (term - table.get(i, 0.0 * term)) / len(terms)
        table.update(terms)
        return estimate

    for _ in range(n_iter):
        rows, val_rows = train.next(), val.next()
        l2 = problem.inner_l2(x)
        grads, hvps, crosses = {}, {}, {}
        for i in rows:
            g, h, c = problem.inner_oracles(z, x, v, [i])
            grads[i], hvps[i], crosses[i] = g - l2 * z, h - l2 * v, c
        vals = {j: problem.outer_grad(z, x, [j]) for j in val_rows}
        dz = saga(memory["grad"], grads, problem.n_train) + l2 * z
        dv = (saga(memory["hvp"], hvps, problem.n_train) + l2 * v
              + saga(memory["val"], vals, problem.n_val))
        if problem.hyperparams.weights_samples:
            dx = saga(memory["cross"], crosses, problem.n_train)
        else:  # no data term: the exact direction, as the kernel takes it
            dx = problem.inner_cross(z, x, v)
        z = (z - inner_step * (dz - l2 * z)) / (1 + inner_step * l2)
        v = (v - inner_step * (dv - l2 * v)) / (1 + inner_step * l2)
        x = np.clip(x - outer_step * dx, -15, 15)
    return x, z, v


@MAPS
def test_saba_kernel_equals_direct_saga(hyperparams):
    """Per-sample memories and the lazy outer updates match a direct SAGA."""
    problem = _problem(hyperparams)
    x0 = np.full(problem.n_outer, -1.0)
    solver = SABA(batch_size=16, step_size=0.2, outer_step_size=3.0)
    state = solver._initialize(problem, x0.copy(), np.random.default_rng(5))
    state.inner_step, state.outer_step = 0.2, 3.0
    assert state.column_scale[-1] != 1.0  # the intercept's own step is exercised
    for _ in range(3):
        solver._kernel_epoch(problem, state, state.memory)
    n_iter = 3 * state.train.batches_per_pass()
    inner_steps = 0.2 * np.tile(state.column_scale, problem.coef_shape[0])
    batch_sizes = (16, solver._val_batch_size(problem))
    assert batch_sizes[1] != 16  # the validation batches have their own size
    x, z, v = _saba_direct(problem, x0, n_iter, batch_sizes, inner_steps, 3.0, seed=5)
    np.testing.assert_allclose(state.x, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.z, z, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.v, v, rtol=1e-9, atol=1e-12)


def _run_chunks(problem, saga, chunk_sizes, workspace=None, python=False):
    """Chunks of ``chunk_sizes`` iterations of the SOBA or SABA kernel at fixed steps.

    From ``x = -1`` with SABA's batches of 16 rows (``random_state=5``);
    return the final ``(x, Z, V)``.
    """
    solver = SABA(batch_size=16, step_size=0.2, outer_step_size=3.0)
    state = solver._initialize(problem, np.full(problem.n_outer, -1.0), np.random.default_rng(5))
    Z, V = problem._matrix(state.z), problem._matrix(state.v)
    for n_iter in chunk_sizes:
        rows, offsets = state.train.take(n_iter)
        val_rows, val_offsets = state.val.take(n_iter)
        single_loop_chunk(
            *problem.kernel_arguments(), Z, V, state.x, rows, offsets, val_rows, val_offsets,
            0.2 * state.column_scale, np.full(problem.n_outer, 3.0),
            np.full(problem.n_outer, -15.0), np.full(problem.n_outer, 15.0), saga,
            state.memory, workspace, python=python,
        )
    return state.x, Z, V


@pytest.mark.parametrize("saga", [False, True], ids=["soba", "saba"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@MAPS
def test_kernel_run_as_python_equals_compiled(hyperparams, loss, sparse, saga):
    """The kernels' Python source (as under NUMBA_DISABLE_JIT) gives the compiled result.

    Their typed operations pick their implementation at run time there, and
    when a kernel is typed in compiled code.
    """
    problem = _problem(hyperparams, sparse, loss)
    states = [_run_chunks(problem, saga, [8], python=python) for python in (False, True)]
    x, Z, _ = states[0]
    assert np.abs(x + 1.0).max() > 1e-3 and np.abs(Z).max() > 1e-3  # the chunk did move
    for compiled, in_python in zip(*states):
        np.testing.assert_allclose(compiled, in_python, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("saga", [False, True], ids=["soba", "saba"])
@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@MAPS
def test_wide_kernels_equal_narrow_kernels(hyperparams, loss, saga, monkeypatch):
    """Dense margins four rows at a time (wide rows) give the row-by-row result.

    The problem's 6 features are made "wide" by lowering the threshold; the
    four-row kernel runs compiled and as Python (batches of 16 and a last
    one of 4 in 100 rows: whole blocks; the validation batches of 8 too).
    """
    problem = _problem(hyperparams, loss=loss, weights="none")
    narrow = _run_chunks(problem, saga, [7])
    monkeypatch.setattr(_linear_kernels, "FOUR_ROW_MARGINS", 1)
    wide = [_run_chunks(problem, saga, [7], python=python) for python in (False, True)]
    assert _linear_kernels._CHUNK_KERNELS[saga, isinstance(hyperparams, SampleWeights),
                                          True].signatures
    for run in wide:
        for a, b in zip(run, narrow):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("saga", [False, True], ids=["soba", "saba"])
@MAPS
def test_chunks_sharing_a_workspace_equal_chunks_with_their_own(hyperparams, saga):
    """A kernel leaves its work arrays ready for the next chunk (the lazy
    updates of sample weights restart from the chunk's first iteration)."""
    problem = _problem(hyperparams)
    common = chunk_workspace(problem.coef_shape, problem.n_outer, 16)
    states = [_run_chunks(problem, saga, [5, 5, 5], workspace=workspace)
              for workspace in (None, common)]
    assert np.abs(states[0][0] + 1.0).max() > 1e-3  # the chunks did move x
    for own, shared in zip(*states):
        np.testing.assert_array_equal(own, shared)


@pytest.mark.parametrize("python", [False, True], ids=["compiled", "python"])
@pytest.mark.parametrize("loss", ["logistic", "squared", "multinomial"])
def test_batch_loss_terms_equal_the_per_row_loss_derivatives(loss, python):
    """Rows 3, 0, 5, 5 of a batch: ``l'(u)``, ``l''(u) q`` and ``<l'(u), q>`` by row."""
    from numba import njit

    from skbilevel.problems import _kernels
    from skbilevel.solvers._linear_kernels import batch_loss_terms

    rng = np.random.default_rng(0)
    code = getattr(_kernels, loss.upper())
    K = 3 if loss == "multinomial" else 1
    y = (rng.integers(0, K, 8) if loss == "multinomial"
         else rng.choice([-1.0, 1.0], 8) if loss == "logistic" else rng.standard_normal(8))
    rows = np.array([7, 3, 0, 5, 5, 1])  # the batch: positions 1 to 4
    U, Q = 30.0 * rng.standard_normal((K, 6)), rng.standard_normal((K, 6))
    targets, cross = np.zeros(6), np.zeros(6)
    work = tuple(np.zeros(K) for _ in range(4))
    operation = batch_loss_terms
    if not python:
        operation = njit(lambda *args: batch_loss_terms(*args))
    got_U, got_Q = U.copy(), Q.copy()
    operation(code, y, rows, 1, 5, got_U, got_Q, targets, cross, work)
    for b, i in enumerate(rows[1:5]):
        g, hq = np.zeros(K), np.zeros(K)
        _kernels.loss_derivative(code, y[i], U[:, b].copy(), g)
        _kernels.loss_hessian_apply(code, y[i], g, Q[:, b].copy(), hq)
        np.testing.assert_allclose(got_U[:, b], g, rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(got_Q[:, b], hq, rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(cross[b], g @ Q[:, b], rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(got_U[:, 4:], U[:, 4:])  # beyond the batch: untouched


@pytest.mark.parametrize("saga", [False, True], ids=["soba", "saba"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@MAPS
def test_kernels_without_weights_equal_kernels_with_unit_weights(hyperparams, loss, sparse,
                                                                 saga):
    """No sample weights reach the kernels as empty arrays, read as ones."""
    states = [_run_chunks(_problem(hyperparams, sparse, loss, weights=weights), saga, [8, 8])
              for weights in ("none", "ones")]
    assert np.abs(states[0][0] + 1.0).max() > 1e-3  # the chunks did move x
    for none, ones in zip(*states):
        np.testing.assert_array_equal(none, ones)
