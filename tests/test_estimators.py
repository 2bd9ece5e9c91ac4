"""The estimators as scikit-learn users meet them."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, PredefinedSplit, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skbilevel import BilevelLogisticRegressionCV, BilevelRidgeCV, HyperCleaner
from skbilevel.estimators import FoldAverageProblem
from skbilevel.estimators import _base as estimators_base
from skbilevel.estimators import _folds as folds_module
from skbilevel.problems import GroupedL2, LinearBilevelProblem, SampleWeights

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def three_classes():
    X, y = make_classification(300, 8, n_informative=5, n_classes=3, random_state=0)
    labels = np.array(["cat", "dog", "emu"])[y]
    return X, labels


ALL = [BilevelLogisticRegressionCV, BilevelRidgeCV, HyperCleaner]
CLASSIFIERS = [BilevelLogisticRegressionCV, HyperCleaner]


def _xy(Estimator, cancer):
    X, y = cancer
    if Estimator is BilevelRidgeCV:
        return X, X[:, :5] @ np.arange(1.0, 6.0) + 0.1 * np.sin(np.arange(len(y)))
    return X, y


# -- fitted attributes and behaviour -----------------------------------------


def test_a_lagging_stochastic_fit_is_caught(cancer, monkeypatch):
    """SABA on breast cancer, 5 folds: its ``z`` lags far behind ``x``.

    The validation loss at its ``z`` is about a tenth of that at the exact fit
    while the strengths run to their bound. An explicit ``solver="saba"``
    says so, and reports the exact fit's score; ``"auto"``, made to start
    with SABA, solves with the reference instead. Without the check, the
    score of SABA's lagging model stands.
    """
    X, y = cancer
    with pytest.warns(ConvergenceWarning, match="lags behind"):
        saba = BilevelLogisticRegressionCV(cv=5, solver="saba", random_state=0).fit(X, y)
    reference = BilevelLogisticRegressionCV(cv=5, solver="reference", random_state=0).fit(X, y)
    assert saba.best_score_ < reference.best_score_ - 0.1
    monkeypatch.setattr(estimators_base, "AUTO_REFERENCE_MAX_SIZE", 0)
    auto = BilevelLogisticRegressionCV(cv=5, random_state=0).fit(X, y)
    assert auto.solver_ == "reference"
    np.testing.assert_allclose(auto.coef_, reference.coef_)
    assert auto.best_score_ == reference.best_score_
    # Where the check would cost too much, SABA's own last model stands.
    monkeypatch.setattr(estimators_base, "INNER_CHECK_MAX_COST", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unchecked = BilevelLogisticRegressionCV(cv=5, random_state=0).fit(X, y)
    assert unchecked.solver_ == "saba"
    assert not any("lags behind" in str(w.message) for w in caught)
    np.testing.assert_allclose(unchecked.x_, saba.x_)  # the same run,
    assert unchecked.best_score_ > saba.best_score_ + 0.1  # scored at its lagging model


def test_logistic_attributes(cancer):
    X, y = cancer
    model = BilevelLogisticRegressionCV(random_state=0).fit(X, y)
    assert model.solver_ == "reference"
    assert model.coef_.shape == (1, X.shape[1]) and model.intercept_.shape == (1,)
    assert model.alpha_.shape == (X.shape[1],) and (model.alpha_ > 0).all()
    np.testing.assert_allclose(model.C_, 1.0 / (0.75 * len(y) * model.alpha_), rtol=1e-2)
    assert model.n_features_in_ == X.shape[1]
    assert set(model.history_) == {
        "time", "epoch", "outer_objective", "validation_score", "grad_norm"
    }
    assert model.history_["outer_objective"][-1] < model.history_["outer_objective"][0]
    # best_score_ leaves out the spread penalty that the objective includes.
    assert -model.best_score_ < model.history_["outer_objective"][-1]
    free = BilevelLogisticRegressionCV(spread_penalty=0.0, random_state=0).fit(X, y)
    np.testing.assert_allclose(free.best_score_, -free.history_["outer_objective"][-1],
                               rtol=1e-3)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X)), proba, rtol=1e-12,
                               atol=1e-15)
    assert model.score(X, y) > 0.95
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(1)])


def test_ridge_attributes_and_scalar_equivalence():
    """With one strength, refit=False gives Ridge(alpha=n * alpha_) on the training rows."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((200, 20))
    y = X @ rng.standard_normal(20) + 3.0 * rng.standard_normal(200) + 5.0
    train, val = np.arange(100), np.arange(100, 200)
    model = BilevelRidgeCV(penalty="scalar", cv=[(train, val)], refit=False).fit(X, y)
    assert isinstance(model.alpha_, float) and model.coef_.shape == (X.shape[1],)
    ridge = Ridge(alpha=len(train) * model.alpha_).fit(X[train], y[train])
    np.testing.assert_allclose(model.coef_, ridge.coef_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.intercept_, ridge.intercept_, rtol=1e-6)
    mse = np.mean((ridge.predict(X[val]) - y[val]) ** 2)
    np.testing.assert_allclose(model.best_score_, -mse, rtol=1e-6)
    # the tuned strength is a minimum of the validation error along the grid
    for factor in (0.7, 1.4):
        other = Ridge(alpha=factor * len(train) * model.alpha_).fit(X[train], y[train])
        assert np.mean((other.predict(X[val]) - y[val]) ** 2) >= mse


def test_refit_keeps_sklearn_C(cancer):
    """The refit on all rows is scikit-learn's LogisticRegression with C = C_."""
    X, y = cancer
    model = BilevelLogisticRegressionCV(penalty="scalar", random_state=0).fit(X, y)
    reference = LogisticRegression(C=model.C_, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-6)


def test_multiclass_string_labels(three_classes):
    X, y = three_classes
    model = BilevelLogisticRegressionCV(random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.classes_, ["cat", "dog", "emu"])
    assert model.coef_.shape == (3, X.shape[1]) and model.intercept_.shape == (3,)
    assert model.decision_function(X).shape == (len(y), 3)
    assert set(model.predict(X)) <= {"cat", "dog", "emu"}
    assert model.score(X, y) > 0.7
    cleaner = HyperCleaner(random_state=0).fit(X, y)
    assert cleaner.predict_proba(X).shape == (len(y), 3)


@pytest.mark.parametrize("penalty", ["scalar", "per_feature", "grouped"])
def test_penalties_shapes(cancer, penalty):
    X, y = cancer
    groups = np.arange(X.shape[1]) % 3 if penalty == "grouped" else None
    model = BilevelLogisticRegressionCV(penalty=penalty, groups=groups,
                                        random_state=0).fit(X, y)
    expected = {"scalar": (), "per_feature": (X.shape[1],), "grouped": (3,)}[penalty]
    assert np.shape(model.alpha_) == expected


# -- several folds -------------------------------------------------------------


@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_fold_average_problem_oracles(loss, fit_intercept, sparse, monkeypatch):
    """The folds' average against the folds' own problems, full data and minibatches.

    Folds of unequal sizes, so that each fold's L2 factor ``n_f / N`` and each
    validation row's weight ``M / (K m_f)`` matter; user sample weights. The
    Hessian's per-fold blocks (made to apply by a lower size limit) from dense
    copies of the folds' rows (dense data) or from their CSR rows (sparse
    data: a fill threshold no block reaches).
    """
    if sparse:
        monkeypatch.setattr(folds_module, "DENSE_BLOCK_FILL", 2.0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    X[rng.random(X.shape) < 0.3] = 0.0
    scores = X @ rng.standard_normal((4, 3)) + rng.standard_normal((60, 3))
    y = np.where(scores[:, 0] > 0, 1.0, -1.0) if loss == "logistic" else scores.argmax(1)
    X = sp.csr_matrix(X) if sparse else X
    weight = rng.uniform(0.5, 2.0, 60)
    folds = [(np.arange(0, 40), np.arange(40, 60)), (np.arange(15, 60), np.arange(0, 15)),
             (np.r_[0:10, 35:60], np.arange(10, 35))]
    problems = [LinearBilevelProblem(X[a], y[a], X[b], y[b], loss=loss,
                                     hyperparams=GroupedL2([0, 1, 1, 0]),
                                     fit_intercept=fit_intercept, sample_weight=weight[a])
                for a, b in folds]
    average = FoldAverageProblem(problems)
    x = rng.standard_normal(2)
    z, v = rng.standard_normal(average.n_inner), rng.standard_normal(average.n_inner)
    zs, vs = average.split(z), average.split(v)
    assert [len(zf) for zf in zs] == [p.n_inner for p in problems]
    np.testing.assert_allclose(
        average.outer_value(z, x), np.mean([p.outer_value(zf, x) for p, zf in zip(problems, zs)])
    )
    weights = np.array([p.n_train for p in problems]) / average.n_train
    blocks = {
        "inner_grad": (average.inner_grad(z, x),
                       [w * p.inner_grad(zf, x) for w, p, zf in zip(weights, problems, zs)]),
        "inner_hvp": (average.inner_hvp(z, x, v),
                      [w * p.inner_hvp(zf, x, vf)
                       for w, p, zf, vf in zip(weights, problems, zs, vs)]),
        "outer_grad": (average.outer_grad(z, x),
                       [p.outer_grad(zf, x) / len(problems) for p, zf in zip(problems, zs)]),
    }
    for name, (stacked, per_fold) in blocks.items():
        for got, expected in zip(average.split(stacked), per_fold):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(
        average.inner_cross(z, x, v),
        sum(w * p.inner_cross(zf, x, vf) for w, p, zf, vf in zip(weights, problems, zs, vs)),
    )
    np.testing.assert_allclose(
        average.inner_value(z, x),
        sum(w * p.inner_value(zf, x) for w, p, zf in zip(weights, problems, zs)),
    )
    # minibatch estimates average to the full oracles over a partition of the rows
    for full, batch, n_rows in (
        (average.inner_grad(z, x), lambda r: average.inner_grad(z, x, r), average.n_train),
        (average.inner_hvp(z, x, v), lambda r: average.inner_hvp(z, x, v, r), average.n_train),
        (average.outer_grad(z, x), lambda r: average.outer_grad(z, x, r), average.n_val),
    ):
        rows = np.arange(n_rows)
        parts = np.array_split(rng.permutation(rows), 5)
        estimate = sum(len(p) * batch(p) for p in parts) / n_rows
        np.testing.assert_allclose(estimate, full, atol=1e-12)
    # the Hessian: one block while it is small, else one block per fold, the
    # folds' own weighted by n_f / N
    full = average.inner_hessian(z, x)
    [(index, block)] = average.inner_hessian_blocks(z, x)
    np.testing.assert_array_equal(index, np.arange(average.n_inner))
    np.testing.assert_allclose(block, full, rtol=1e-12, atol=1e-14)
    monkeypatch.setattr(folds_module, "DENSE_HESSIAN_MAX", problems[0].n_inner)
    assert average.hessian_block_size == problems[0].n_inner
    scattered = np.zeros_like(full)
    for (index, block), w, p, zf in zip(average.inner_hessian_blocks(z, x), weights,
                                         problems, zs):
        np.testing.assert_allclose(block, w * p.inner_hessian(zf, x), rtol=1e-12, atol=1e-14)
        scattered[np.ix_(index, index)] = block
    np.testing.assert_allclose(scattered, full, rtol=1e-12, atol=1e-14)
    # threads over the rows give the same full-data derivatives
    threaded = FoldAverageProblem(problems, n_jobs=2)
    try:
        np.testing.assert_allclose(threaded.inner_grad(z, x), average.inner_grad(z, x),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(threaded.inner_hvp(z, x, v), average.inner_hvp(z, x, v),
                                   rtol=1e-12, atol=1e-14)
    finally:
        threaded.close()


def test_fold_average_problem_rejects_per_sample_maps():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), np.repeat([-1.0, 1.0], 10)
    problems = [LinearBilevelProblem(X[:10], y[:10], X[10:], y[10:],
                                     hyperparams=SampleWeights())] * 2
    with pytest.raises(ValueError, match="only share L2 strengths"):
        FoldAverageProblem(problems)


def test_fold_average_problem_takes_the_folds_spread_penalty():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), np.repeat([-1.0, 1.0], 10)
    folds = [LinearBilevelProblem(X[:10], y[:10], X[10:], y[10:], spread_penalty=penalty)
             for penalty in (0.5, 0.5, 0.25)]
    folds[1] = LinearBilevelProblem(X[10:], y[10:], X[:10], y[:10], spread_penalty=0.5)
    stacked = FoldAverageProblem(folds[:2])
    assert stacked.spread_penalty == 0.5
    # The centre: the mean of the folds' (from their own training rows).
    np.testing.assert_allclose(stacked.spread_offset,
                               (folds[0].spread_offset + folds[1].spread_offset) / 2)
    assert not np.allclose(folds[0].spread_offset, folds[1].spread_offset)
    with pytest.raises(ValueError, match="spread penalty"):
        FoldAverageProblem(folds[1:])


@pytest.mark.parametrize("cv", [None, 3])
def test_spread_penalty_ties_the_strengths(cv, cancer):
    # Entries +-1: every column has mean square 1 on any rows, so the prior is
    # centred on equal strengths and the spread of x_ is what it weighs.
    X, y = np.where(cancer[0] >= 0, 1.0, -1.0), cancer[1]
    spreads = []
    for spread_penalty in (0.0, 1.0, 1e6):
        model = BilevelLogisticRegressionCV(spread_penalty=spread_penalty, cv=cv,
                                            random_state=0).fit(X, y)
        spreads.append(model.x_.std())
        if spread_penalty == 1.0:  # best_score_ leaves the penalty out
            assert model.best_score_ > model.history_["validation_score"][-1]
    assert spreads[0] > spreads[1] > spreads[2]
    assert spreads[2] < 1e-3
    # Tied strengths: the common level is the scalar optimum.
    scalar = BilevelLogisticRegressionCV(penalty="scalar", cv=cv, random_state=0).fit(X, y)
    assert abs(model.x_.mean() - scalar.x_[0]) < 1e-2


@pytest.mark.parametrize("cv", [None, 3])
def test_spread_penalty_does_not_depend_on_the_features_units(cv, cancer):
    """Feature k in units a_k times smaller: strength a_k^2 times larger, same model."""
    X, y = cancer
    units = np.ones(X.shape[1])
    units[[0, 5, 9]] = 10.0, 0.1, 3.0
    model = BilevelLogisticRegressionCV(cv=cv, random_state=0).fit(X, y)
    rescaled = BilevelLogisticRegressionCV(cv=cv, random_state=0).fit(X * units, y)
    np.testing.assert_allclose(rescaled.x_ - 2 * np.log(units), model.x_, atol=1e-2)
    np.testing.assert_allclose(rescaled.predict_proba(X * units), model.predict_proba(X),
                               atol=1e-4)


def test_several_folds_share_strengths(cancer):
    X, y = cancer
    scalar = BilevelLogisticRegressionCV(penalty="scalar", cv=3, random_state=0)
    scalar.fit(X, y)
    assert scalar.solver_ == "reference" and isinstance(scalar.alpha_, float)
    threads = clone(scalar).set_params(n_jobs=2).fit(X, y)
    np.testing.assert_allclose(threads.coef_, scalar.coef_, rtol=1e-10)
    X, y = X[:200, :10], y[:200]
    model = BilevelLogisticRegressionCV(cv=3, random_state=0).fit(X, y)
    assert model.solver_ == "reference" and model.alpha_.shape == (X.shape[1],)
    assert model.score(X, y) > 0.9


# -- scikit-learn integration --------------------------------------------------


@pytest.mark.parametrize("Estimator", ALL)
def test_pipeline_clone_cross_val_score(Estimator, cancer):
    X, y = _xy(Estimator, cancer)
    pipe = make_pipeline(StandardScaler(), Estimator(random_state=0))
    scores = cross_val_score(clone(pipe), X, y, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    threshold = 0.9 if Estimator is not BilevelRidgeCV else 0.99
    assert scores.mean() > threshold


def test_nested_grid_search(cancer):
    X, y = cancer
    grid = GridSearchCV(
        BilevelLogisticRegressionCV(solver="saba", max_epochs=3, random_state=0,
                                    outer_step_size=1.0),
        {"batch_size": [16, 64]}, cv=2,
    ).fit(X, y)
    assert grid.best_params_["batch_size"] in (16, 64)
    assert grid.score(X, y) > 0.9


def test_hypercleaner_trusted_routing(three_classes):
    """``trusted`` is routed as metadata through cross_val_score and Pipeline."""
    import sklearn

    X, y = three_classes
    trusted = np.arange(len(y)) % 4 == 0
    with sklearn.config_context(enable_metadata_routing=True):
        cleaner = HyperCleaner(random_state=0).set_fit_request(trusted=True,
                                                                sample_weight=False)
        scores = cross_val_score(cleaner, X, y, cv=3, params={"trusted": trusted})
        assert np.isfinite(scores).all()
        pipe = make_pipeline(StandardScaler(), clone(cleaner)).fit(X, y, trusted=trusted)
        np.testing.assert_array_equal(pipe[-1].trusted_, trusted)


def test_pandas_feature_names(cancer):
    pd = pytest.importorskip("pandas")
    X, y = cancer
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = BilevelLogisticRegressionCV(random_state=0).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(model.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        model.predict(X)


@pytest.mark.parametrize("Estimator", ALL)
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_matches_dense(Estimator, fmt, cancer):
    """Sparse and dense data give the same fit.

    With one strength the coefficients agree to rounding. Per-feature
    strengths on this nearly separable subset sit on flat stretches of the
    validation loss where rounding differences between the sparse and dense
    products send L-BFGS-B to different strengths of the same validation
    loss: that loss is what must agree. HyperCleaner's 150 weights are
    between the two: its full-data derivatives are matrix products (BLAS on
    dense data, scipy.sparse on CSR), whose rounding differs, and the
    reference solver stops (tol=1e-6) at weights whose coefficients differ
    by 5e-8 of their norm (elementwise, 1.3e-6 on a small coefficient).
    """
    X, y = _xy(Estimator, cancer)
    X = X[:200] * (np.abs(X[:200]) > 0.5)
    y = y[:200]
    X_sparse = sp.csr_matrix(X).asformat(fmt)
    params = dict(random_state=0)
    if Estimator is BilevelLogisticRegressionCV:
        per_feature = Estimator(**params).fit(X, y)
        per_feature_sparse = Estimator(**params).fit(X_sparse, y)
        np.testing.assert_allclose(per_feature_sparse.best_score_, per_feature.best_score_,
                                   rtol=1e-5)
    if Estimator is not HyperCleaner:
        params["penalty"] = "scalar"
    dense = Estimator(**params).fit(X, y)
    sparse = Estimator(**params).fit(X_sparse, y)
    if Estimator is HyperCleaner:
        assert np.linalg.norm(sparse.coef_ - dense.coef_) <= 1e-6 * np.linalg.norm(dense.coef_)
    else:
        np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sparse.predict(X_sparse), dense.predict(X), rtol=1e-6,
                               atol=1e-8)


@pytest.mark.parametrize("Estimator", ALL)
def test_float32_input(Estimator, cancer):
    X, y = _xy(Estimator, cancer)
    model = Estimator(random_state=0).fit(X.astype(np.float32), y)
    reference = Estimator(random_state=0).fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("Estimator", ALL)
@pytest.mark.parametrize("solver", ["auto", "saba"])
def test_pickle_and_random_state(Estimator, solver, cancer):
    X, y = _xy(Estimator, cancer)
    params = dict(random_state=3, solver=solver, max_epochs=3, outer_step_size=1.0)
    model = Estimator(**params).fit(X, y)
    again = Estimator(**params).fit(X, y)
    np.testing.assert_array_equal(model.coef_, again.coef_)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_warm_start(cancer):
    X, y = cancer
    model = BilevelLogisticRegressionCV(random_state=0, warm_start=True).fit(X, y)
    first = model.n_iter_
    model.fit(X, y)
    assert model.n_iter_ < max(first, 2)


def test_hypercleaner_downweights_flipped_labels():
    X, y = make_classification(400, 10, n_informative=6, class_sep=2.0, random_state=0)
    rng = np.random.RandomState(0)
    trusted = np.arange(400) < 100
    flipped = ~trusted & (rng.rand(400) < 0.3)
    y_noisy = np.where(flipped, 1 - y, y)
    cleaner = HyperCleaner(random_state=0).fit(X, y_noisy, trusted=trusted)
    weights = cleaner.sample_weight_
    np.testing.assert_array_equal(weights[trusted], 1.0)
    assert weights[flipped].mean() < 0.5 * weights[~trusted & ~flipped].mean()
    # user weights multiply the learned ones
    user = np.full(400, 2.0)
    doubled = HyperCleaner(random_state=0).fit(X, y_noisy, sample_weight=user,
                                               trusted=trusted)
    np.testing.assert_array_equal(doubled.sample_weight_[trusted], 2.0)


# -- the scalar penalty against a grid search -----------------------------------


def test_scalar_penalty_matches_fine_grid_search():
    """C_ within a factor 1.5 of a fine grid's best C, validation log-loss within 1e-3."""
    X, y = make_classification(600, 15, n_informative=5, flip_y=0.1, random_state=0)
    X = StandardScaler().fit_transform(X)
    train, val = np.arange(400), np.arange(400, 600)
    model = BilevelLogisticRegressionCV(penalty="scalar", solver="reference",
                                        cv=[(train, val)], refit=False).fit(X, y)
    fold = np.r_[np.full(400, -1), np.zeros(200)]
    Cs = np.logspace(-4, 2, 121)  # steps of a factor 1.12
    grid = GridSearchCV(
        LogisticRegression(tol=1e-10, max_iter=10_000), {"C": Cs},
        scoring="neg_log_loss", cv=PredefinedSplit(fold), refit=False,
    ).fit(X, y)
    best_C = grid.best_params_["C"]
    grid_loss = -grid.best_score_
    ours = log_loss(y[val], model.predict_proba(X[val]))
    assert 1 / 1.5 <= model.C_ / best_C <= 1.5, (model.C_, best_C)
    assert ours <= grid_loss + 1e-3, (ours, grid_loss)
    np.testing.assert_allclose(-model.best_score_, ours, rtol=1e-6)


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("Estimator", ALL)
def test_nan_and_inf(Estimator, cancer):
    X, y = _xy(Estimator, cancer)
    for value, word in ((np.nan, "NaN"), (np.inf, "infinity")):
        bad = X.copy()
        bad[3, 2] = value
        with pytest.raises(ValueError, match=f"Input X contains {word}"):
            Estimator().fit(bad, y)


@pytest.mark.parametrize("Estimator", ALL)
def test_wrong_shapes(Estimator, cancer):
    X, y = _xy(Estimator, cancer)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Estimator().fit(X, y[:-1])
    with pytest.raises(ValueError, match="Expected 2D array"):
        Estimator().fit(X[:, 0], y)


@pytest.mark.parametrize("Estimator", CLASSIFIERS)
def test_one_class(Estimator, cancer):
    X, _ = cancer
    with pytest.raises(ValueError, match="only one class"):
        Estimator().fit(X, np.ones(len(X)))


@pytest.mark.parametrize("Estimator", ALL)
def test_empty_and_non_numeric(Estimator):
    with pytest.raises(ValueError, match="0 sample"):
        Estimator().fit(np.empty((0, 3)), np.empty(0))
    X = np.array([["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]], dtype=object)
    with pytest.raises(ValueError, match="could not convert string to float"):
        Estimator().fit(X, [0, 1, 0, 1])


def test_trusted_errors(cancer):
    X, y = cancer
    with pytest.raises(ValueError, match=re.escape("one entry per sample (569)")):
        HyperCleaner().fit(X, y, trusted=np.ones(10, dtype=bool))
    with pytest.raises(ValueError, match="trusted has no True entry"):
        HyperCleaner().fit(X, y, trusted=np.zeros(len(y), dtype=bool))
    with pytest.raises(ValueError, match="trusted must be a boolean mask"):
        HyperCleaner().fit(X, y, trusted=np.arange(len(y)) % 2)


@pytest.mark.parametrize("Estimator", ALL)
def test_negative_sample_weight(Estimator, cancer):
    X, y = _xy(Estimator, cancer)
    weights = np.ones(len(y))
    weights[5] = -1.0
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        Estimator().fit(X, y, sample_weight=weights)


@pytest.mark.parametrize("params, message", [
    (dict(solver="newton"), "The 'solver' parameter"),
    (dict(penalty="l1"), "The 'penalty' parameter"),
    (dict(max_epochs=-1), "The 'max_epochs' parameter"),
    (dict(cv=1), "The 'cv' parameter"),
    (dict(validation_fraction=1.5), "The 'validation_fraction' parameter"),
    (dict(batch_size=0), "The 'batch_size' parameter"),
    (dict(spread_penalty=-1.0), "The 'spread_penalty' parameter"),
])
def test_invalid_parameters(params, message, cancer):
    X, y = cancer
    with pytest.raises(InvalidParameterError, match=message):
        BilevelLogisticRegressionCV(**params).fit(X, y)


def test_invalid_groups(cancer):
    X, y = cancer
    with pytest.raises(ValueError, match='penalty="grouped" needs groups'):
        BilevelLogisticRegressionCV(penalty="grouped").fit(X, y)
    with pytest.raises(ValueError, match="groups must have one entry per feature"):
        BilevelLogisticRegressionCV(penalty="grouped", groups=[0, 1]).fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'l2' parameter"):
        HyperCleaner(l2=0.0).fit(X, y)


@pytest.mark.parametrize("Estimator", ALL)
def test_predict_before_fit_and_wrong_features(Estimator, cancer):
    X, y = _xy(Estimator, cancer)
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        Estimator().predict(X)
    model = Estimator(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but .* is expecting 30"):
        model.predict(X[:, :5])


def test_not_converged_warns_and_stays_finite(cancer):
    X, y = cancer
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = BilevelLogisticRegressionCV(max_iter=1, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        stochastic = BilevelLogisticRegressionCV(solver="soba", max_epochs=1,
                                                 random_state=0).fit(X, y)
    for fitted in (model, stochastic):
        for name in ("coef_", "intercept_", "alpha_", "C_"):
            assert np.isfinite(getattr(fitted, name)).all()


@pytest.mark.parametrize("solver", ["reference", "saba"])
def test_spent_time_limit_stops_at_the_start(solver, cancer):
    """A budget spent by the first evaluation: the strengths stay at x0 = 0."""
    X, y = cancer
    with pytest.warns(ConvergenceWarning, match="time limit reached"):
        model = BilevelLogisticRegressionCV(solver=solver, time_limit=1e-9,
                                            random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.alpha_, np.ones(X.shape[1]))
    assert np.isfinite(model.coef_).all()


def test_converged_fit_is_silent(cancer):
    X, y = cancer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BilevelLogisticRegressionCV(penalty="scalar", random_state=0).fit(X, y)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_verbose_prints(cancer, capsys):
    X, y = cancer
    BilevelLogisticRegressionCV(penalty="scalar", verbose=2, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "training and" in out and "[reference] iter" in out
    BilevelLogisticRegressionCV(penalty="scalar", random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""
