"""The oracles of LinearBilevelProblem against finite differences and each other."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, logsumexp, softmax

from skbilevel.problems import (
    DesignMatrix,
    FeatureL2,
    GroupedL2,
    LinearBilevelProblem,
    SampleWeights,
    ScalarL2,
)

LOSSES = ["logistic", "multinomial", "squared"]
MAPS = {
    "scalar": ScalarL2,
    "feature": FeatureL2,
    "grouped": lambda: GroupedL2(np.array([1, 0, 2, 1, 1])),
    # fixed factors on the strengths; feature 1 unpenalized
    "grouped_scaled": lambda: GroupedL2(np.array([1, 0, 2, 1, 1]),
                                        scale=[1.0, 0.0, 2.5, 0.5, 1.0]),
    "samples": lambda: SampleWeights(l2=0.05),
}
INPUTS = ["dense", "csr"]

FD_TOL = 1e-6
STEP = 1e-5

grid = pytest.mark.parametrize(
    "loss, hyperparams, fit_intercept, input_kind",
    [
        (loss, hp, fi, kind)
        for loss in LOSSES
        for hp in MAPS
        for fi in (True, False)
        for kind in INPUTS
    ],
)
loss_map_grid = pytest.mark.parametrize(
    "loss, hyperparams", [(loss, hp) for loss in LOSSES for hp in MAPS]
)


def _sample_weight(n, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 2.0, n)
    w[3] = 0.0  # a zero weight is allowed
    return w


def _build(data, loss, hyperparams, fit_intercept, input_kind="dense",
           sample_weight=None, convert=None, val_sample_weight=None, spread_penalty=0.0):
    X_train, y_train, X_val, y_val = data
    if convert is None:
        convert = {"dense": np.ascontiguousarray, "csr": sp.csr_matrix}[input_kind]
    return LinearBilevelProblem(
        convert(X_train), y_train, convert(X_val), y_val, loss=loss,
        hyperparams=MAPS[hyperparams](), fit_intercept=fit_intercept,
        sample_weight=sample_weight, val_sample_weight=val_sample_weight,
        spread_penalty=spread_penalty,
    )


def _point(problem, seed=2):
    """Random ``z``, ``v`` and ``x`` (``x`` of moderate scale)."""
    rng = np.random.default_rng(seed)
    z = 0.5 * rng.standard_normal(problem.n_inner)
    v = rng.standard_normal(problem.n_inner)
    x = 0.5 * rng.standard_normal(problem.n_outer)
    return z, v, x


def _rel_err(actual, reference):
    actual, reference = np.asarray(actual, float), np.asarray(reference, float)
    assert actual.shape == reference.shape
    scale = np.linalg.norm(np.ravel(reference))
    assert scale > 0, "the reference is zero: the comparison would be vacuous"
    return np.linalg.norm(np.ravel(actual - reference)) / scale


def _fd_gradient(f, w, h=STEP):
    """Central finite differences of the scalar function ``f`` at ``w``."""
    grad = np.empty(w.size)
    for k in range(w.size):
        e = np.zeros(w.size)
        e[k] = h
        grad[k] = (f(w + e) - f(w - e)) / (2 * h)
    return grad


def _fd_directional(f, w, d, h=STEP):
    """Central finite differences of the (vector) function ``f`` at ``w`` along ``d``."""
    return (f(w + h * d) - f(w - h * d)) / (2 * h)


def _all_oracles(problem, z, v, x, train_rows=None, val_rows=None):
    grad, hvp, cross = problem.inner_oracles(z, x, v, train_rows)
    return {
        "inner_value": problem.inner_value(z, x, train_rows),
        "inner_grad": problem.inner_grad(z, x, train_rows),
        "inner_hvp": problem.inner_hvp(z, x, v, train_rows),
        "inner_cross": problem.inner_cross(z, x, v, train_rows),
        "inner_oracles[0]": grad,
        "inner_oracles[1]": hvp,
        "inner_oracles[2]": cross,
        "outer_value": problem.outer_value(z, x, val_rows),
        "outer_grad": problem.outer_grad(z, x, val_rows),
        "outer_grad_x": problem.outer_grad_x(z, x, val_rows),
    }


def _assert_oracles_close(actual, reference, rtol):
    for name in reference:
        ref = np.asarray(reference[name], float)
        act = np.asarray(actual[name], float)
        assert act.shape == ref.shape, name
        if not np.any(ref):
            np.testing.assert_array_equal(act, ref, err_msg=name)
            continue
        err = _rel_err(act, ref)
        assert err < rtol, f"{name}: relative error {err:.3e} >= {rtol:.0e}"


# -- finite differences ------------------------------------------------------


@grid
def test_oracles_match_finite_differences(make_data, loss, hyperparams,
                                          fit_intercept, input_kind):
    # User sample weights (training and validation) on half of the grid
    # (every loss x map has both).
    use_weights = fit_intercept != (input_kind == "csr")
    sample_weight = _sample_weight(30) if use_weights else None
    val_sample_weight = _sample_weight(20, seed=3) if use_weights else None
    problem = _build(make_data(loss), loss, hyperparams, fit_intercept,
                     input_kind, sample_weight, val_sample_weight=val_sample_weight)
    K = 3 if loss == "multinomial" else 1
    assert problem.coef_shape == (K, 5 + fit_intercept)
    assert problem.n_inner == K * (5 + fit_intercept)
    assert problem.n_outer == {"scalar": 1, "feature": 5, "grouped": 3, "grouped_scaled": 3,
                               "samples": 30}[hyperparams]
    z, v, x = _point(problem)

    # d1 G against FD of G in z.
    grad = problem.inner_grad(z, x)
    fd = _fd_gradient(lambda w: problem.inner_value(w, x), z)
    assert _rel_err(grad, fd) < FD_TOL

    # d11 G v against FD of d1 G along v.
    hvp = problem.inner_hvp(z, x, v)
    fd = _fd_directional(lambda w: problem.inner_grad(w, x), z, v)
    assert _rel_err(hvp, fd) < FD_TOL

    # d21 G v against FD in x of <d1 G(z, x), v>.
    cross = problem.inner_cross(z, x, v)
    assert cross.shape == (problem.n_outer,)
    fd = _fd_gradient(lambda xx: problem.inner_grad(z, xx) @ v, x)
    assert _rel_err(cross, fd) < FD_TOL

    # d1 F against FD of F in z.
    outer_grad = problem.outer_grad(z, x)
    fd = _fd_gradient(lambda w: problem.outer_value(w, x), z)
    assert _rel_err(outer_grad, fd) < FD_TOL

    # F does not depend on x: d2 F is zero, and so is the FD of F in x.
    grad_x = problem.outer_grad_x(z, x)
    np.testing.assert_array_equal(grad_x, np.zeros(problem.n_outer))
    fd = _fd_gradient(lambda xx: problem.outer_value(z, xx), x)
    np.testing.assert_array_equal(fd, 0.0)

    # The intercept is never penalized: for the L2 maps, x does not change
    # the intercept entries of d1 G (nor those of features of scale 0), but
    # does change the other feature entries.
    if fit_intercept and hyperparams != "samples":
        grad_shifted = problem.inner_grad(z, x + 1.0).reshape(problem.coef_shape)
        grad = grad.reshape(problem.coef_shape)
        np.testing.assert_array_equal(grad_shifted[:, -1], grad[:, -1])
        penalized = problem.hyperparams.l2_strengths(x) > 0
        np.testing.assert_array_equal(grad_shifted[:, :-1][:, ~penalized],
                                      grad[:, :-1][:, ~penalized])
        assert np.all(grad_shifted[:, :-1][:, penalized] != grad[:, :-1][:, penalized])


@pytest.mark.parametrize("hyperparams", ["feature", "grouped"])
@pytest.mark.parametrize("input_kind", ["dense", "csr"])
def test_spread_penalty_matches_finite_differences(make_data, hyperparams, input_kind):
    data = make_data("logistic")
    plain = _build(data, "logistic", hyperparams, True, input_kind)
    spread = 0.7
    problem = _build(data, "logistic", hyperparams, True, input_kind, spread_penalty=spread)
    z, _, x = _point(problem)
    # The centre: log of each group's mean of its features' scales, the mean
    # squares of their non-zero values.
    groups = problem.hyperparams.groups_
    X_train = np.asarray(data[0])
    scales = (X_train ** 2).sum(axis=0) / np.count_nonzero(X_train, axis=0)
    offset = np.log(np.bincount(groups, scales) / np.bincount(groups))
    np.testing.assert_allclose(problem.spread_offset, offset, rtol=1e-12)
    centered = (x - offset) - (x - offset).mean()
    assert problem.outer_value(z, x) == pytest.approx(
        plain.outer_value(z, x) + 0.5 * spread * centered @ centered, rel=1e-13)
    assert problem.validation_loss(z) == pytest.approx(plain.outer_value(z, x), rel=1e-13)
    rows = np.array([3, 0, 7])
    assert problem.outer_value(z, x, rows) == pytest.approx(
        plain.outer_value(z, x, rows) + 0.5 * spread * centered @ centered, rel=1e-13)
    # d2 F against FD of F in x; shifting every x_k alike changes nothing.
    fd = _fd_gradient(lambda xx: problem.outer_value(z, xx), x)
    assert _rel_err(problem.outer_grad_x(z, x), fd) < FD_TOL
    assert problem.outer_value(z, x + 3.0) == pytest.approx(problem.outer_value(z, x), rel=1e-12)
    np.testing.assert_array_equal(problem.outer_grad_x(z, x, rows), problem.outer_grad_x(z, x))


@pytest.mark.parametrize("input_kind", ["dense", "csr"])
def test_spread_penalty_does_not_depend_on_the_features_units(make_data, input_kind):
    """A feature scaled by ``a`` takes a strength ``a^2`` times larger at no cost."""
    X_train, y_train, X_val, y_val = make_data("logistic")
    units = np.ones(X_train.shape[1])
    units[[0, 2]] = 10.0, 0.01
    original = _build((X_train, y_train, X_val, y_val), "logistic", "feature", True,
                      input_kind, spread_penalty=0.7)
    rescaled = _build((X_train * units, y_train, X_val * units, y_val), "logistic",
                      "feature", True, input_kind, spread_penalty=0.7)
    z, _, x = _point(original)
    x_rescaled = x + 2 * np.log(units)
    assert rescaled.spread(x_rescaled) == pytest.approx(original.spread(x), rel=1e-12)
    np.testing.assert_allclose(rescaled.outer_grad_x(z, x_rescaled),
                               original.outer_grad_x(z, x), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("input_kind", ["dense", "csr"])
def test_a_rare_feature_has_the_scale_of_its_values(input_kind):
    X = np.zeros((6, 3))
    X[:, 0] = 0.5  # frequent
    X[[1, 4], 1] = 0.5, -0.5  # rare, same values
    X[2, 2] = 3.0
    X = {"dense": X, "csr": sp.csr_matrix(X)}[input_kind]
    np.testing.assert_allclose(DesignMatrix(X).nonzero_column_scales(), [0.25, 0.25, 9.0])


def test_spread_offset_of_an_all_zero_feature_is_the_mean_of_the_others():
    hyperparams = FeatureL2().bind(3, 4)
    offsets = hyperparams.feature_scale_offsets(np.array([1.0, 0.0, np.e ** 2]))
    np.testing.assert_allclose(offsets, [0.0, 1.0, 2.0])


# -- minibatches ---------------------------------------------------------------


@grid
def test_single_row_oracles_average_to_full(make_data, loss, hyperparams,
                                            fit_intercept, input_kind):
    sample_weight = _sample_weight(30) if fit_intercept else None
    val_sample_weight = _sample_weight(20, seed=3) if fit_intercept else None
    problem = _build(make_data(loss), loss, hyperparams, fit_intercept,
                     input_kind, sample_weight, val_sample_weight=val_sample_weight)
    z, v, x = _point(problem)
    n, m = problem.n_train, problem.n_val

    sums = dict.fromkeys(
        ["value", "grad", "hvp", "cross", "joint_grad", "joint_hvp", "joint_cross"],
        0.0,
    )
    for i in range(n):
        rows = [i]
        sums["value"] = sums["value"] + problem.inner_value(z, x, rows)
        sums["grad"] = sums["grad"] + problem.inner_grad(z, x, rows)
        sums["hvp"] = sums["hvp"] + problem.inner_hvp(z, x, v, rows)
        sums["cross"] = sums["cross"] + problem.inner_cross(z, x, v, rows)
        grad, hvp, cross = problem.inner_oracles(z, x, v, rows)
        sums["joint_grad"] = sums["joint_grad"] + grad
        sums["joint_hvp"] = sums["joint_hvp"] + hvp
        sums["joint_cross"] = sums["joint_cross"] + cross

    full_grad, full_hvp, full_cross = (
        problem.inner_grad(z, x), problem.inner_hvp(z, x, v),
        problem.inner_cross(z, x, v),
    )
    assert _rel_err(sums["value"] / n, problem.inner_value(z, x)) < 1e-12
    for key, full in [("grad", full_grad), ("hvp", full_hvp), ("cross", full_cross)]:
        assert _rel_err(sums[key] / n, full) < 1e-12, key
        assert _rel_err(sums["joint_" + key] / n, full) < 1e-12, "joint_" + key

    outer_value, outer_grad = 0.0, 0.0
    for j in range(m):
        outer_value = outer_value + problem.outer_value(z, x, [j])
        outer_grad = outer_grad + problem.outer_grad(z, x, [j])
        np.testing.assert_array_equal(problem.outer_grad_x(z, x, [j]), 0.0)
    assert _rel_err(outer_value / m, problem.outer_value(z, x)) < 1e-12
    assert _rel_err(outer_grad / m, problem.outer_grad(z, x)) < 1e-12


@grid
def test_shuffled_full_batch_equals_full_oracles(make_data, loss, hyperparams,
                                                 fit_intercept, input_kind):
    sample_weight = None if fit_intercept else _sample_weight(30)
    problem = _build(make_data(loss), loss, hyperparams, fit_intercept,
                     input_kind, sample_weight)
    z, v, x = _point(problem)
    rng = np.random.default_rng(3)
    train_rows = rng.permutation(problem.n_train)
    val_rows = rng.permutation(problem.n_val)
    assert not np.array_equal(train_rows, np.arange(problem.n_train))
    shuffled = _all_oracles(problem, z, v, x, train_rows, val_rows)
    full = _all_oracles(problem, z, v, x)
    _assert_oracles_close(shuffled, full, 1e-12)


@grid
def test_value_and_grad_equals_kernel_oracles(make_data, loss, hyperparams,
                                              fit_intercept, input_kind):
    """``inner_value_and_grad`` (NumPy, BLAS) against the kernels' oracles."""
    sample_weight = _sample_weight(30) if fit_intercept else None
    problem = _build(make_data(loss), loss, hyperparams, fit_intercept,
                     input_kind, sample_weight)
    z, _, x = _point(problem)
    value, grad = problem.inner_value_and_grad(4.0 * z, x)
    assert _rel_err(value, problem.inner_value(4.0 * z, x)) < 1e-13
    assert _rel_err(grad, problem.inner_grad(4.0 * z, x)) < 1e-13


@grid
def test_dense_hessian_equals_hessian_vector_products(make_data, loss, hyperparams,
                                                       fit_intercept, input_kind):
    """``inner_hessian`` (one pass, per-row curvatures) against ``n_inner`` HVPs."""
    sample_weight = _sample_weight(30) if fit_intercept else None
    problem = _build(make_data(loss), loss, hyperparams, fit_intercept,
                     input_kind, sample_weight)
    z, _, x = _point(problem)
    z = 4.0 * z  # margins far from zero: curvatures far from their bounds
    columns = np.column_stack([problem.inner_hvp(z, x, e) for e in np.eye(problem.n_inner)])
    hessian = problem.inner_hessian(z, x)
    assert hessian.shape == (problem.n_inner, problem.n_inner)
    assert _rel_err(hessian, columns) < 1e-13


@grid
def test_joint_inner_oracles_equal_separate_ones(make_data, loss, hyperparams,
                                                 fit_intercept, input_kind):
    sample_weight = _sample_weight(30) if fit_intercept else None
    problem = _build(make_data(loss), loss, hyperparams, fit_intercept,
                     input_kind, sample_weight)
    z, v, x = _point(problem)
    rng = np.random.default_rng(4)
    batches = [
        None,
        rng.choice(problem.n_train, 7, replace=False),
        np.array([5, 5, 12]),  # repeated rows, as sampling with replacement gives
        [17],
    ]
    for rows in batches:
        grad, hvp, cross = problem.inner_oracles(z, x, v, rows)
        for joint, separate in [
            (grad, problem.inner_grad(z, x, rows)),
            (hvp, problem.inner_hvp(z, x, v, rows)),
            (cross, problem.inner_cross(z, x, v, rows)),
        ]:
            assert joint.shape == separate.shape
            assert _rel_err(joint, separate) <= 1e-14


@loss_map_grid
def test_minibatch_oracles_match_finite_differences(make_data, loss, hyperparams):
    """On a minibatch, each oracle is the derivative of the minibatch value."""
    problem = _build(make_data(loss), loss, hyperparams, True, "csr",
                     _sample_weight(30))
    z, v, x = _point(problem)
    rows, val_rows = np.array([2, 9, 9, 21, 4]), np.array([0, 13, 7])
    grad, hvp, cross = problem.inner_oracles(z, x, v, rows)
    fd = _fd_gradient(lambda w: problem.inner_value(w, x, rows), z)
    assert _rel_err(grad, fd) < FD_TOL
    fd = _fd_directional(lambda w: problem.inner_grad(w, x, rows), z, v)
    assert _rel_err(hvp, fd) < FD_TOL
    fd = _fd_gradient(lambda xx: problem.inner_grad(z, xx, rows) @ v, x)
    assert _rel_err(cross, fd) < FD_TOL
    if hyperparams == "samples":
        # d21 G v is supported on the sampled coordinates only.
        assert set(np.flatnonzero(cross)) <= set(rows.tolist())
    fd = _fd_gradient(lambda w: problem.outer_value(w, x, val_rows), z)
    assert _rel_err(problem.outer_grad(z, x, val_rows), fd) < FD_TOL


# -- input layouts -------------------------------------------------------------


@loss_map_grid
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_input_layouts_give_the_same_oracles(make_data, loss, hyperparams,
                                             fit_intercept):
    data = make_data(loss)
    sample_weight = _sample_weight(30) if fit_intercept else None

    def oracles(convert):
        problem = _build(data, loss, hyperparams, fit_intercept,
                         sample_weight=sample_weight, convert=convert)
        z, v, x = _point(problem)
        rows, val_rows = np.array([4, 0, 11, 11, 27]), np.array([3, 19])
        return (_all_oracles(problem, z, v, x),
                _all_oracles(problem, z, v, x, rows, val_rows))

    reference = oracles(np.ascontiguousarray)
    variants = {
        "fortran": (np.asfortranarray, 1e-12),
        "csr": (sp.csr_matrix, 1e-12),
        "csc": (sp.csc_matrix, 1e-12),
        "coo": (sp.coo_matrix, 1e-12),
        "csr_array": (sp.csr_array, 1e-12),
        "float32 upcast": (lambda X: X.astype(np.float32).astype(np.float64), None),
        "float32": (lambda X: X.astype(np.float32), 1e-6),
        "float32 csr": (lambda X: sp.csr_matrix(X.astype(np.float32)), 1e-6),
    }
    assert np.asfortranarray(data[0]).flags.f_contiguous
    float32_upcast = oracles(variants.pop("float32 upcast")[0])
    for name, (convert, rtol) in variants.items():
        actual = oracles(convert)
        for act, ref in zip(actual, reference):
            _assert_oracles_close(act, ref, rtol)
        if name.startswith("float32"):
            # float32 input is the float64 matrix of the same values.
            for act, ref in zip(actual, float32_upcast):
                _assert_oracles_close(act, ref, 1e-12)


def test_csr_with_duplicates_and_unsorted_indices(make_data):
    data = make_data("logistic")
    X_train = data[0]
    # Every stored entry split in two duplicates, each row listed backwards.
    data_, indices, indptr = [], [], [0]
    for row in X_train:
        cols = np.flatnonzero(row)[::-1]
        data_ += [0.25 * row[cols], 0.75 * row[cols]]
        indices += [cols, cols]
        indptr.append(indptr[-1] + 2 * len(cols))
    messy = sp.csr_matrix(
        (np.concatenate(data_), np.concatenate(indices), np.array(indptr)),
        shape=X_train.shape,
    )
    assert not messy.has_canonical_format
    assert messy.nnz == 2 * np.count_nonzero(X_train)
    np.testing.assert_allclose(messy.toarray(), X_train, rtol=1e-15)
    reference = _build(data, "logistic", "feature", True, "dense")
    problem = LinearBilevelProblem(messy, data[1], sp.csr_matrix(data[2]), data[3],
                                   hyperparams=FeatureL2())
    z, v, x = _point(reference)
    _assert_oracles_close(_all_oracles(problem, z, v, x),
                          _all_oracles(reference, z, v, x), 1e-12)


@pytest.mark.parametrize(
    "convert",
    [np.asfortranarray, lambda X: X.astype(np.float32), lambda X: X.astype(int),
     lambda X: X[:, ::-1].copy()[:, ::-1]],
    ids=["fortran", "float32", "int", "negative-strides"],
)
def test_dense_design_is_c_ordered_float64(make_data, convert):
    X = convert(make_data("squared")[0])
    design = DesignMatrix(X, "X")
    dense = design.arrays[0]
    assert dense.dtype == np.float64 and dense.flags.c_contiguous
    np.testing.assert_array_equal(dense, np.asarray(X, dtype=np.float64))
    assert design.shape == X.shape and not design.sparse


# -- numerical stability -------------------------------------------------------


def _reference_oracles(loss, X_train, y_train, X_val, y_val, fit_intercept, r,
                       z, v):
    """NumPy/SciPy reference of values, gradients and Hessian products (L2 maps)."""
    K = 3 if loss == "multinomial" else 1
    W = z.reshape(K, -1)
    V = v.reshape(K, -1)

    def augment(X):
        return np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X

    penalized = slice(0, W.shape[1] - fit_intercept)

    def data_terms(X, y, with_hvp):
        D = augment(X)
        U = D @ W.T  # (n, K)
        Q = D @ V.T
        if loss == "squared":
            u, q = U[:, 0], Q[:, 0]
            value = 0.5 * ((u - y) ** 2).mean()
            g = (u - y)[:, None]
            h = q[:, None]
        elif loss == "logistic":
            u, q = U[:, 0], Q[:, 0]
            value = np.logaddexp(0.0, -y * u).mean()
            g = (-y * expit(-y * u))[:, None]
            h = (expit(u) * expit(-u) * q)[:, None]
        else:
            labels = y.astype(int)
            value = (logsumexp(U, axis=1) - U[np.arange(len(y)), labels]).mean()
            P = softmax(U, axis=1)
            g = P - np.eye(K)[labels]
            h = P * Q - P * (P * Q).sum(1, keepdims=True)
        grad = g.T @ D / len(y)
        hvp = h.T @ D / len(y) if with_hvp else None
        return value, grad, hvp

    value, grad, hvp = data_terms(X_train, y_train, True)
    value += 0.5 * (r * W[:, penalized] ** 2).sum()
    grad[:, penalized] += r * W[:, penalized]
    hvp[:, penalized] += r * V[:, penalized]
    outer_value, outer_grad, _ = data_terms(X_val, y_val, False)
    return value, grad.ravel(), hvp.ravel(), outer_value, outer_grad.ravel()


@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@pytest.mark.parametrize("hyperparams", ["feature", "samples"])
@pytest.mark.parametrize("input_kind", INPUTS)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_huge_margins_are_finite(make_data, loss, hyperparams, input_kind,
                                 fit_intercept):
    X_train, y_train, X_val, y_val = make_data(loss)
    data = (1e3 * X_train, y_train, 1e3 * X_val, y_val)
    problem = _build(data, loss, hyperparams, fit_intercept, input_kind)
    rng = np.random.default_rng(5)
    z = rng.standard_normal(problem.n_inner)
    v = rng.standard_normal(problem.n_inner)
    x = 0.5 * rng.standard_normal(problem.n_outer)

    K = problem.coef_shape[0]
    W = z.reshape(K, -1)
    D = np.hstack([data[0], np.ones((30, 1))]) if fit_intercept else data[0]
    U = D @ W.T
    assert np.abs(U).max() > 700  # the naive exp(u) would overflow
    if loss == "logistic":  # margins of both signs, on both sides of the labels
        assert (y_train * U[:, 0] > 700).any() and (y_train * U[:, 0] < -700).any()

    # Overflow warnings are errors (they surface when the kernels run as
    # Python under NUMBA_DISABLE_JIT=1); underflow to zero is harmless.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        oracles = _all_oracles(problem, z, v, x)
        for rows, val_rows in [([0, 1, 2], [3, 4]), ([7], [8])]:
            batch = _all_oracles(problem, z, v, x, rows, val_rows)
            oracles.update({f"{k} on {rows}": val for k, val in batch.items()})
    for name, value in oracles.items():
        assert np.all(np.isfinite(value)), name

    # And they are right, not just finite.
    if hyperparams == "feature":
        r = np.exp(x)
        value, grad, hvp, outer_value, outer_grad = _reference_oracles(
            loss, *data, fit_intercept, r, z, v
        )
        full = _all_oracles(problem, z, v, x)
        assert _rel_err(full["inner_value"], value) < 1e-10
        assert _rel_err(full["inner_grad"], grad) < 1e-10
        assert _rel_err(full["inner_hvp"], hvp) < 1e-10
        assert _rel_err(full["outer_value"], outer_value) < 1e-10
        assert _rel_err(full["outer_grad"], outer_grad) < 1e-10


@pytest.mark.parametrize("loss", ["logistic", "multinomial", "squared"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_oracles_match_numpy_reference(make_data, loss, fit_intercept):
    data = make_data(loss)
    problem = _build(data, loss, "feature", fit_intercept, "csr")
    z, v, x = _point(problem)
    value, grad, hvp, outer_value, outer_grad = _reference_oracles(
        loss, *data, fit_intercept, np.exp(x), z, v
    )
    assert _rel_err(problem.inner_value(z, x), value) < 1e-12
    assert _rel_err(problem.inner_grad(z, x), grad) < 1e-12
    assert _rel_err(problem.inner_hvp(z, x, v), hvp) < 1e-12
    assert _rel_err(problem.outer_value(z, x), outer_value) < 1e-12
    assert _rel_err(problem.outer_grad(z, x), outer_grad) < 1e-12


@pytest.mark.parametrize("input_kind", INPUTS)
def test_squared_row_norms(make_data, input_kind):
    from skbilevel.problems._design import DesignMatrix

    X = make_data("logistic")[0]
    design = DesignMatrix({"dense": np.asarray, "csr": sp.csr_matrix}[input_kind](X))
    np.testing.assert_allclose(design.squared_row_norms(), (X ** 2).sum(1), rtol=1e-14)


@pytest.mark.parametrize("input_kind", ["dense", "csr"])
def test_block_smoothness_bounds_the_data_hessian(make_data, input_kind):
    """Features: the largest eigenvalue of the bound's Hessian (within the margin); intercept."""
    data = make_data("logistic")
    weights = _sample_weight(len(data[1]))
    problem = _build(data, "logistic", "feature", True, input_kind, sample_weight=weights)
    x = np.zeros(problem.n_outer)
    X = np.asarray(data[0])
    curvature_weights = 0.25 * weights
    exact = np.linalg.eigvalsh(X.T @ (curvature_weights[:, None] * X) / len(weights))[-1]
    full, per_sample = problem.feature_smoothness(x)
    assert exact <= full <= 1.05 * exact * (1 + 2e-3)
    np.testing.assert_allclose(per_sample, curvature_weights * (X ** 2).sum(1), rtol=1e-12)
    full, per_sample = problem.intercept_smoothness(x)
    assert full == pytest.approx(curvature_weights.mean(), rel=1e-12)
    np.testing.assert_allclose(per_sample, curvature_weights, rtol=1e-12)
    no_intercept = _build(data, "logistic", "feature", False, input_kind)
    assert no_intercept.intercept_smoothness(x) is None


@pytest.mark.parametrize("batch", range(1, 10))
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("both", [False, True])
def test_dense_batch_scatter_adds_the_weighted_rows(batch, n_outputs, fit_intercept, both):
    """The compiled sums of a batch, four rows at a time, against NumPy (short blocks too)."""
    from skbilevel.problems._kernels import dense_batch_scatter

    rng = np.random.default_rng(batch)
    X = rng.standard_normal((30, 5))
    rows = rng.permutation(30)
    start, stop = 7, 7 + batch
    C, D = rng.standard_normal((2, n_outputs, 12))
    G0, H0 = rng.standard_normal((2, n_outputs, 5 + fit_intercept))
    G, H = G0.copy(), H0.copy()
    dense_batch_scatter(X, rows, start, stop, fit_intercept, C, G, D, H, both, n_outputs)
    design = X[rows[start:stop]]
    if fit_intercept:
        design = np.hstack([design, np.ones((batch, 1))])
    np.testing.assert_allclose(G, G0 + C[:, :batch] @ design, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H, H0 + D[:, :batch] @ design if both else H0,
                               rtol=1e-12, atol=1e-12)


def _four_row_margins(*args):
    """The four-row margins of the kernels for wide rows, run as Python."""
    from skbilevel.problems._batches import batch_margins_four_rows

    batch_margins_four_rows(*args)


def _compiled_margins(*args):
    from skbilevel.problems._kernels import dense_batch_margins

    dense_batch_margins(*args)


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("both", [False, True])
@pytest.mark.parametrize("batch", [7, 8, 9])  # four rows at a time: a last block of 3, 4, 1
@pytest.mark.parametrize("margins", [_compiled_margins, _four_row_margins],
                         ids=["row_by_row_compiled", "four_rows"])
def test_dense_batch_margins_are_the_rows_times_the_coefficients(n_outputs, fit_intercept, both,
                                                                batch, margins):
    """The margins of a batch against NumPy."""
    rng = np.random.default_rng(n_outputs)
    X = rng.standard_normal((30, 5))
    rows = rng.permutation(30)
    start, stop = 7, 7 + batch
    W, V = rng.standard_normal((2, n_outputs, 5 + fit_intercept))
    U0, Q0 = rng.standard_normal((2, n_outputs, 12))
    U, Q = U0.copy(), Q0.copy()
    margins(X, rows, start, stop, fit_intercept, W, U, V, Q, both, n_outputs)
    design = X[rows[start:stop]]
    if fit_intercept:
        design = np.hstack([design, np.ones((batch, 1))])
    np.testing.assert_allclose(U[:, :batch], W @ design.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Q[:, :batch], V @ design.T if both else Q0[:, :batch],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(U[:, batch:], U0[:, batch:])  # beyond the batch: untouched
