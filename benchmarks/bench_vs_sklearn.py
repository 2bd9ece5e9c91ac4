"""Benchmark: the bilevel estimators against scikit-learn's and Optuna's tuning.

Same data, same machine, same run: every method is fitted on the same rows
and scored on the same held-out test rows; the figures are the wall time of
``fit`` (tuning plus the final refit), the test log-loss and accuracy
(classification) or the test mean squared error and R2 (regression), the
number of tuned hyperparameters, and each method's time divided by the time
of the dataset's reference baseline (``LogisticRegressionCV`` or
``RidgeCV``), measured in the same run.

Datasets (issue 5), with what is done to them before any method sees them:

- ``ijcnn1``: fit on the 49,990 rows of ``ijcnn1.trn`` (LIBSVM's ``tr`` and
  ``val`` together), test on the 91,701 rows of ``ijcnn1.tst``; dense; every
  method gets the features standardized by one ``StandardScaler`` fitted on
  the 49,990 fitting rows (fitted once, outside the timings; its statistics
  thus also see the rows that later validate inside a method's CV, the same
  small leak for every method).
- ``20newsgroups``: tf-idf (``skbilevel.datasets.load_20newsgroups_tfidf``),
  fit on the 11,314 training posts, test on the 7,532 test posts; sparse CSR,
  about 130,000 features, 20 classes (multinomial); not rescaled.
- ``breast_cancer``: ``load_breast_cancer``, split in halves (stratified,
  ``random_state=0``), standardized as IJCNN1 (scaler fitted on the fitting
  half).
- ``synthetic_classification``: ``make_classification`` (10 features: 5
  informative, 5 redundant; 5 % of the labels flipped; ``random_state=0``)
  with 190 added standard Gaussian noise columns, then every column multiplied by
  ``10 ** u``, ``u`` uniform in [-2, 2]: many irrelevant and badly scaled
  features. 1,000 fitting rows, 10,000 test rows. Not standardized (the bad
  scaling is the point); a ``StandardScaler + LogisticRegressionCV``
  pipeline is run as an extra scalar-tuned baseline.
- ``diabetes`` (regression): ``load_diabetes``, halves, standardized.
- ``synthetic_regression``: ``make_regression`` with 200 features of which
  10 are informative (190 irrelevant), noise 10; 500 fitting rows, 10,000
  test rows; not rescaled.

Methods (``n_jobs=1`` and one BLAS thread everywhere, ``--blas-threads``: the
machine has two cores shared with other jobs, where a second OpenBLAS thread
can make small products many times slower):

- ``LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss")`` (the
  reference of the classification datasets), pure L2 through
  ``l1_ratios=(0.0,)`` and ``use_legacy_attributes=False`` (no deprecation
  warning in scikit-learn 1.8+); ``GridSearchCV(LogisticRegression(), 20
  values of C = logspace(-4, 4, 20), cv=5, scoring="neg_log_loss")``; an
  untuned ``LogisticRegression()`` (C=1) for context.
- Optuna's TPE (IJCNN1 only, if ``optuna`` is installed): the 22 per-feature
  strengths, 100 trials, seeded; see :class:`OptunaPerFeatureLogistic`.
- ``BilevelLogisticRegressionCV`` with its defaults and ``random_state=0``:
  ``penalty`` "scalar" and "per_feature", ``cv`` None (a 25 % holdout) and 5
  (IJCNN1, breast_cancer, synthetic); on 20 Newsgroups per-feature and scalar
  with ``cv=None`` only. On the other sets, per-feature also with free
  strengths, ``spread_penalty=0`` (the default, 1, is a prior that ties the
  log-strengths together).
- Regression: ``RidgeCV(alphas=logspace(-4, 4, 20))`` (efficient
  leave-one-out; the reference), ``GridSearchCV(Ridge(), same alphas, cv=5)``
  and ``BilevelRidgeCV`` as above.

For the bilevel fits, the time of ``fit`` is split into problem
construction, the solver run (and, within it, the solver's own time from
``history_``), the final refit on all rows and the rest (validation,
splits), by wrapping the estimator's internal steps for the duration of the
fit (``phase_timer``); ``solver_``, ``n_iter_`` and the last epoch of
``history_`` are reported too.

Numba: before any timing, every bilevel configuration of a dataset is
fitted once on a small subsample (one epoch), which loads or compiles the
kernels; compile time is thus excluded from the timings. The cold compile
time of a first fit (empty Numba cache) is measured once, in fresh
interpreters, at the end (``--no-compile`` skips it).

Targets (issue 5): on IJCNN1, per-feature ``BilevelLogisticRegressionCV``
reaches a test log-loss no worse than ``LogisticRegressionCV`` in at most a
quarter of its wall time; on 20 Newsgroups, a test accuracy at least that of
``LogisticRegressionCV`` in no more of its wall time; on the
irrelevant-features problems (breast_cancer and synthetic_classification), a
better test log-loss than every scalar-tuned method of the table
(scikit-learn's and the bilevel scalar ones). Judged on every per-feature
bilevel row; the same comparison on test MSE for synthetic_regression is
reported as an extra, not an issue target.

Run from the repository's root::

    python benchmarks/bench_vs_sklearn.py              # everything
    python benchmarks/bench_vs_sklearn.py --quick      # subsampled (IJCNN1, 20 Newsgroups)
    python benchmarks/bench_vs_sklearn.py --datasets ijcnn1,breast_cancer

Outputs in ``benchmarks/results/``: ``bench_vs_sklearn.csv`` (one row per
dataset and method), ``bench_vs_sklearn_env.csv`` (versions, machine, load,
compile times) and ``bench_vs_sklearn.png`` (test loss against wall time).
"""

import argparse
import os
import time
import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import (load_breast_cancer, load_diabetes, make_classification,
                              make_regression)
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

import _common  # noqa: I001  (also puts the in-tree skbilevel on sys.path)
from skbilevel import BilevelLogisticRegressionCV, BilevelRidgeCV
from skbilevel.datasets import load_20newsgroups_tfidf, load_ijcnn1
from skbilevel.estimators import _base as _bilevel_base

RESULTS_NAME = "bench_vs_sklearn"
DATASETS = ("ijcnn1", "20newsgroups", "breast_cancer", "synthetic_classification",
            "diabetes", "synthetic_regression")
REFERENCE = {"classification": "LogisticRegressionCV", "regression": "RidgeCV"}
GRID_C = np.logspace(-4, 4, 20)
RIDGE_ALPHAS = np.logspace(-4, 4, 20)
IJCNN1_SPEED_TARGET = 0.25
COLUMNS = [
    "dataset", "method", "family", "tuning", "cv", "n_hyperparams", "n_fit", "n_test",
    "n_features", "fit_time_s", "fit_cpu_s", "time_ratio_to_ref", "test_log_loss", "test_accuracy",
    "test_mse", "test_r2", "target", "target_met", "solver", "n_iter", "epochs",
    "t_problem_s", "t_solver_s", "t_solver_own_s", "t_refit_s", "t_other_s",
    "warnings", "warning_messages", "load_avg_1min", "note",
]


# -- the datasets --------------------------------------------------------------


def _standardized(X, X_test):
    """``X`` and ``X_test`` scaled by a StandardScaler fitted on ``X``."""
    scaler = StandardScaler().fit(X)
    return scaler.transform(X), scaler.transform(X_test)


def _subsample(X, y, n, seed, stratify=True):
    """``n`` rows of ``(X, y)`` drawn without replacement (stratified on ``y``)."""
    if n is None or n >= X.shape[0]:
        return X, y
    X, _, y, _ = train_test_split(X, y, train_size=n, stratify=y if stratify else None,
                                  random_state=seed)
    return X, y


def load_ijcnn1_case(quick, seed, data_home):
    data = _common.load_dataset(load_ijcnn1, data_home=data_home, dense=True)
    X = np.vstack([data.X_train, data.X_val])
    y = np.concatenate([data.y_train, data.y_val])
    X, y = _subsample(X, y, 10_000 if quick else None, seed)
    X, X_test = _standardized(X, data.X_test)
    return Bunch(X=X, y=y, X_test=X_test, y_test=data.y_test, task="classification",
                 prep="StandardScaler fitted on the fitting rows")


def load_20newsgroups_case(quick, seed, data_home):
    data = _common.load_dataset(load_20newsgroups_tfidf, data_home=data_home)
    X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    prep = "tf-idf as loaded (CSR), not rescaled"
    if quick:  # 2,000 posts of each split, the 5,000 terms most frequent in the fitting ones
        X, y = _subsample(X, y, 2_000, seed)
        X_test, y_test = _subsample(X_test, y_test, 2_000, seed)
        terms = np.sort(np.argsort(-X.getnnz(axis=0), kind="stable")[:5_000])
        X, X_test = X[:, terms], X_test[:, terms]
        prep += "; quick: 2,000 posts per split, the 5,000 most frequent terms"
    return Bunch(X=X, y=y, X_test=X_test, y_test=y_test, task="classification", prep=prep)


def _halves(X, y, task, seed):
    """Half the rows to fit (stratified for a classification), half to test, standardized."""
    X, X_test, y, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y if task == "classification" else None,
        random_state=seed)
    X, X_test = _standardized(X, X_test)
    return Bunch(X=X, y=y, X_test=X_test, y_test=y_test, task=task,
                 prep="halves" + (" (stratified)" if task == "classification" else "")
                 + ", StandardScaler fitted on the fitting half")


def _first_rows(X, y, n_fit, task, prep):
    """The first ``n_fit`` rows to fit, the others to test."""
    return Bunch(X=X[:n_fit], y=y[:n_fit], X_test=X[n_fit:], y_test=y[n_fit:], task=task,
                 prep=prep)


def load_breast_cancer_case(quick, seed, data_home):
    return _halves(*load_breast_cancer(return_X_y=True), "classification", seed)


def load_synthetic_classification(quick, seed, data_home):
    """10 useful features (5 informative, 5 redundant) + 190 noise, badly scaled."""
    n_fit, n_test = 1_000, 10_000
    X, y = make_classification(n_samples=n_fit + n_test, n_features=10, n_informative=5,
                               n_redundant=5, flip_y=0.05, random_state=seed)
    rng = np.random.default_rng(seed)
    X = np.hstack([X, rng.standard_normal((X.shape[0], 190))])
    X *= 10.0 ** rng.uniform(-2, 2, size=X.shape[1])
    return _first_rows(X, y, n_fit, "classification",
                       "raw: columns scaled by 10**U(-2, 2), not standardized")


def load_diabetes_case(quick, seed, data_home):
    return _halves(*load_diabetes(return_X_y=True), "regression", seed)


def load_synthetic_regression(quick, seed, data_home):
    """200 features, 10 informative (190 irrelevant), noise 10."""
    n_fit, n_test = 500, 10_000
    X, y = make_regression(n_samples=n_fit + n_test, n_features=200, n_informative=10,
                           noise=10.0, random_state=seed)
    return _first_rows(X, y, n_fit, "regression", "raw (standard normal features)")


LOADERS = {
    "ijcnn1": load_ijcnn1_case,
    "20newsgroups": load_20newsgroups_case,
    "breast_cancer": load_breast_cancer_case,
    "synthetic_classification": load_synthetic_classification,
    "diabetes": load_diabetes_case,
    "synthetic_regression": load_synthetic_regression,
}


# -- Optuna's baseline -----------------------------------------------------------


class OptunaPerFeatureLogistic(ClassifierMixin, BaseEstimator):
    """Per-feature L2 strengths of a logistic regression tuned by Optuna's TPE.

    The weighted-penalty model for strengths ``alpha_k`` minimizes
    ``(1/n) sum_i l(y_i, x_i w + b) + (1/2) sum_k alpha_k w_k^2``. With the
    features rescaled, ``x'_k = x_k sqrt(c / alpha_k)``, and ``w'_k = w_k
    sqrt(alpha_k / c)``, the margins are unchanged and the penalty becomes
    ``(c/2) ||w'||^2``: a plain L2 logistic regression on the rescaled
    features, which scikit-learn's ``LogisticRegression(C=1 / (n c))`` fits
    (its objective is ``C sum_i l + ||w||^2 / 2``). ``c`` is any positive
    constant: the geometric mean of the strengths, which keeps the rescaled
    features around their original scale.

    Objective of a trial: the validation log-loss of that model fitted on a
    holdout split, 75 % / 25 % of the rows (stratified, ``random_state``),
    the split ``BilevelLogisticRegressionCV(cv=None)`` uses in size. Search
    space: each ``alpha_k`` log-uniform in ``[1e-8, 1e2]``. Then the model
    is refitted on all rows with the best strengths, keeping scikit-learn's
    convention of the same ``C`` per feature, ``C_k = 1 / (n_train
    alpha_k)`` (as ``LogisticRegressionCV`` and the bilevel estimators do).
    ``max_iter=1000``: rescaled by up to ``1e5``, the features make
    ill-conditioned problems that L-BFGS does not solve in 100 iterations.
    """

    def __init__(self, n_trials=100, low=1e-8, high=1e2, random_state=0):
        self.n_trials = n_trials
        self.low = low
        self.high = high
        self.random_state = random_state

    @staticmethod
    def _fit_weighted(X, y, alpha_sum_units):
        """Logistic regression with penalty ``(1/2) sum_k a_k w_k^2`` on ``C sum l``.

        ``alpha_sum_units`` are the strengths relative to the summed loss
        (``n alpha`` for the strengths of the mean loss).
        """
        c = np.exp(np.mean(np.log(alpha_sum_units)))
        scale = np.sqrt(c / alpha_sum_units)
        model = LogisticRegression(C=1.0 / c, solver="newton-cholesky").fit(X * scale, y)
        return model, scale

    def fit(self, X, y):
        import optuna

        X_tr, X_val, y_tr, y_val = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=self.random_state)
        n_features, n_tr = X.shape[1], X_tr.shape[0]

        def objective(trial):
            alpha = np.array([trial.suggest_float(f"alpha_{k}", self.low, self.high, log=True)
                              for k in range(n_features)])
            model, scale = self._fit_weighted(X_tr, y_tr, n_tr * alpha)
            return log_loss(y_val, model.predict_proba(X_val * scale), labels=model.classes_)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.random_state)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(objective, n_trials=self.n_trials)
        self.alpha_ = np.array([study.best_params[f"alpha_{k}"] for k in range(n_features)])
        self.best_score_ = -study.best_value
        # Same C_k = 1 / (n_tr alpha_k) on all rows: the summed-loss strengths are kept.
        self.model_, self.scale_ = self._fit_weighted(X, y, n_tr * self.alpha_)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X * self.scale_)

    def predict(self, X):
        return self.model_.predict(X * self.scale_)


def optuna_available():
    return _optuna_version() != "not installed"


# -- the methods -------------------------------------------------------------------


def _logistic_cv():
    return LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", l1_ratios=(0.0,),
                                use_legacy_attributes=False, n_jobs=1)


def _bilevel_rows(estimator_class, penalties, cvs, n_features, free_strengths=True):
    """Bilevel rows: every penalty x cv with the defaults; per-feature ones also free.

    Free: ``spread_penalty=0``, no prior on the spread of the strengths.
    """
    rows = []
    for penalty in penalties:
        for free in (False, True) if free_strengths and penalty == "per_feature" else (False,):
            for cv in cvs:
                name = "per-feature" if penalty == "per_feature" else "scalar"
                where = "holdout" if cv is None else f"cv={cv}"
                rows.append(dict(
                    method=f"{estimator_class.__name__} {name} {where}"
                           + (" spread_penalty=0" if free else ""),
                    family="bilevel",
                    role=f"bilevel {name} {'holdout' if cv is None else 'cv'}"
                         + (" free" if free else ""),
                    tuning=penalty, cv="holdout 25%" if cv is None else str(cv),
                    n_hyperparams=n_features if penalty == "per_feature" else 1,
                    estimator=estimator_class(penalty=penalty, cv=cv, random_state=0,
                                              n_jobs=1, **({"spread_penalty": 0.0} if free
                                                           else {})),
                ))
    return rows


def methods(dataset, case, optuna_trials):
    """The methods of one dataset: dicts with the estimator and table fields."""
    p = case.X.shape[1]
    if case.task == "regression":
        rows = [
            dict(method="RidgeCV", family="sklearn", role="reference", tuning="scalar",
                 cv="LOO (GCV)", n_hyperparams=1, estimator=RidgeCV(alphas=RIDGE_ALPHAS)),
            dict(method="GridSearchCV(Ridge) 20 alphas", family="sklearn", role="grid",
                 tuning="scalar", cv="5", n_hyperparams=1,
                 estimator=GridSearchCV(Ridge(), {"alpha": RIDGE_ALPHAS}, cv=5,
                                        scoring="neg_mean_squared_error", n_jobs=1)),
        ]
        return rows + _bilevel_rows(BilevelRidgeCV, ("scalar", "per_feature"), (None, 5), p)
    rows = [
        dict(method="LogisticRegressionCV", family="sklearn", role="reference", tuning="scalar",
             cv="5", n_hyperparams=1, estimator=_logistic_cv()),
    ]
    if dataset == "synthetic_classification":
        rows.append(dict(method="StandardScaler + LogisticRegressionCV", family="sklearn",
                         role="scaled", tuning="scalar", cv="5", n_hyperparams=1,
                         estimator=make_pipeline(StandardScaler(), _logistic_cv())))
    if dataset != "20newsgroups":
        rows.append(dict(
            method="GridSearchCV(LogisticRegression) 20 C", family="sklearn", role="grid",
            tuning="scalar", cv="5", n_hyperparams=1,
            estimator=GridSearchCV(LogisticRegression(), {"C": GRID_C}, cv=5,
                                   scoring="neg_log_loss", n_jobs=1)))
    rows.append(dict(method="LogisticRegression C=1 (untuned)", family="sklearn",
                     role="untuned", tuning="none", cv="", n_hyperparams=0,
                     estimator=LogisticRegression()))
    if dataset == "ijcnn1":
        rows.append(dict(
            method=f"Optuna TPE per-feature ({optuna_trials} trials)", family="optuna",
            role="optuna", tuning="per_feature", cv="holdout 25%", n_hyperparams=p,
            estimator=OptunaPerFeatureLogistic(n_trials=optuna_trials, random_state=0)
            if optuna_available() else None,
            note="" if optuna_available() else "skipped: optuna is not installed"))
    if dataset == "20newsgroups":  # 130,108 strengths: one run, with the defaults
        return rows + _bilevel_rows(BilevelLogisticRegressionCV, ("scalar", "per_feature"),
                                    (None,), p, free_strengths=False)
    return rows + _bilevel_rows(BilevelLogisticRegressionCV, ("scalar", "per_feature"),
                                (None, 5), p)


# -- timing ----------------------------------------------------------------------


@contextmanager
def phase_timer():
    """Accumulate the time of the bilevel estimators' internal steps.

    Wraps ``_problems`` (problem construction), ``_run_solver`` (the solver)
    and ``_refit_inner`` (the final refit) of the estimators' base class for
    the duration of the block; yields the dict of accumulated seconds.
    """
    cls = _bilevel_base.BaseBilevelEstimator
    times = {}
    originals = {name: cls.__dict__[name] for name in ("_problems", "_run_solver",
                                                       "_refit_inner") if name in cls.__dict__}

    def wrap(name, method):
        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return timed

    for name, method in originals.items():
        setattr(cls, name, wrap(name, method))
    try:
        yield times
    finally:
        for name, method in originals.items():
            setattr(cls, name, method)


def _summarize_warnings(caught):
    """``("Category xN; ...", "first message of each category | ...")``."""
    counts, messages = {}, {}
    for w in caught:
        name = w.category.__name__
        counts[name] = counts.get(name, 0) + 1
        messages.setdefault(name, " ".join(str(w.message).split())[:200])
    return ("; ".join(f"{name} x{count}" for name, count in sorted(counts.items())),
            " | ".join(f"{name}: {text}" for name, text in sorted(messages.items())))


def fit_timed(estimator, X, y):
    """Fit, and return ``(fitted or None, seconds, phases, warnings, error)``.

    ``warnings`` is the pair of :func:`_summarize_warnings`.

    ``phases`` holds the times of :func:`phase_timer` and ``cpu``, the
    process CPU time of the fit (all threads): wall time well above it means
    the fit waited for a core.
    """
    with phase_timer() as phases, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            estimator.fit(X, y)
            error = ""
        except Exception as exc:  # a failure is a result: report it, go on
            error = f"{type(exc).__name__}: {exc}"
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    phases = dict(phases, cpu=cpu)
    return (None if error else estimator), elapsed, phases, _summarize_warnings(caught), error


def warm_up_numba(case, rows, seed):
    """Fit every bilevel configuration once on a small subsample (one epoch)."""
    n = min(case.X.shape[0], 400)
    X, y = _subsample(case.X, case.y, n, seed, stratify=case.task == "classification")
    for row in rows:
        if row["family"] != "bilevel":
            continue
        estimator = clone(row["estimator"]).set_params(max_epochs=1, max_iter=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                estimator.fit(X, y)
            except Exception:
                pass  # the timed fit will report it
        # Also the stochastic path, which "auto" skips on small data.
        estimator = clone(row["estimator"]).set_params(max_epochs=1, solver="saba")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                estimator.fit(X, y)
            except Exception:
                pass


def score(model, case):
    if case.task == "regression":
        pred = model.predict(case.X_test)
        return dict(test_mse=mean_squared_error(case.y_test, pred),
                    test_r2=r2_score(case.y_test, pred))
    proba = model.predict_proba(case.X_test)
    classes = model.classes_
    return dict(test_log_loss=log_loss(case.y_test, proba, labels=classes),
                test_accuracy=accuracy_score(case.y_test, classes[np.argmax(proba, axis=1)]))


def bilevel_details(model, phases, elapsed):
    est = model[-1] if hasattr(model, "steps") else model
    history = est.history_
    parts = {
        "t_problem_s": phases.get("_problems", 0.0),
        "t_solver_s": phases.get("_run_solver", 0.0),
        "t_refit_s": phases.get("_refit_inner", 0.0),
    }
    return dict(
        solver=est.solver_, n_iter=est.n_iter_, epochs=float(history["epoch"][-1]),
        t_solver_own_s=float(history["time"][-1]),
        t_other_s=elapsed - sum(parts.values()), **parts,
    )


def run_dataset(dataset, case, optuna_trials, seed):
    rows = methods(dataset, case, optuna_trials)
    warm_up_numba(case, rows, seed)
    results = []
    for row in rows:
        estimator = row.pop("estimator")
        out = dict(dataset=dataset, n_fit=case.X.shape[0], n_test=case.X_test.shape[0],
                   n_features=case.X.shape[1], load_avg_1min=os.getloadavg()[0], **row)
        if estimator is None:
            results.append(out)
            print(f"  {row['method']:<48s} {row.get('note', '')}", flush=True)
            continue
        model, elapsed, phases, caught, error = fit_timed(estimator, case.X, case.y)
        caught, messages = caught
        out.update(fit_time_s=elapsed, fit_cpu_s=phases["cpu"], warnings=caught,
                   warning_messages=messages)
        if error:
            out["note"] = (out.get("note", "") + " fit failed: " + error).strip()
        else:
            out.update(score(model, case))
            if row["family"] == "bilevel":
                out.update(bilevel_details(model, phases, elapsed))
        metric = ("test_mse" if case.task == "regression" else "test_log_loss")
        print(f"  {row['method']:<48s} {elapsed:9.2f} s  {metric} "
              f"{out.get(metric, float('nan')):.5g}"
              + (f"  acc {out['test_accuracy']:.4f}" if "test_accuracy" in out else "")
              + (f"  [{caught}]" if caught else "") + (f"  {error}" if error else ""),
              flush=True)
        results.append(out)
    add_ratios_and_targets(dataset, case.task, results)
    return results


# -- the targets ------------------------------------------------------------------


def add_ratios_and_targets(dataset, task, rows):
    ref = next((r for r in rows if r["method"] == REFERENCE[task]), {})
    ref_time = ref.get("fit_time_s")
    for row in rows:
        if ref_time and row.get("fit_time_s") is not None:
            row["time_ratio_to_ref"] = row["fit_time_s"] / ref_time
    per_feature = [r for r in rows if r["family"] == "bilevel" and r["tuning"] == "per_feature"]
    scalar = [r for r in rows if r["tuning"] == "scalar"]
    for row in per_feature:
        ratio = row.get("time_ratio_to_ref", np.nan)
        if dataset == "ijcnn1":
            ll, ref_ll = row.get("test_log_loss", np.nan), ref.get("test_log_loss", np.nan)
            row["target"] = (f"log-loss {ll:.5f} <= LRCV {ref_ll:.5f} and time ratio "
                             f"{ratio:.3f} <= {IJCNN1_SPEED_TARGET}")
            row["target_met"] = _yes(ll <= ref_ll and ratio <= IJCNN1_SPEED_TARGET)
        elif dataset == "20newsgroups":
            acc, ref_acc = row.get("test_accuracy", np.nan), ref.get("test_accuracy", np.nan)
            row["target"] = (f"accuracy {acc:.4f} >= LRCV {ref_acc:.4f} and time ratio "
                             f"{ratio:.3f} <= 1")
            row["target_met"] = _yes(acc >= ref_acc and ratio <= 1.0)
        elif dataset in ("breast_cancer", "synthetic_classification", "synthetic_regression"):
            key = "test_mse" if task == "regression" else "test_log_loss"
            best = min(scalar, key=lambda r: r.get(key, np.inf))
            value, best_value = row.get(key, np.nan), best.get(key, np.nan)
            extra = "extra (not an issue target): " if task == "regression" else ""
            row["target"] = (f"{extra}{key} {value:.5g} < best scalar-tuned {best_value:.5g} "
                             f"({best['method']})")
            row["target_met"] = _yes(value < best_value)


def _yes(flag):
    return "yes" if bool(flag) else "no"


# -- compile time and plot ------------------------------------------------------------

_COMPILE_SNIPPET = """
import json, time, warnings
import numpy as np
import scipy.sparse as sp
from skbilevel import BilevelLogisticRegressionCV, BilevelRidgeCV
rng = np.random.default_rng(0)
X = rng.standard_normal((600, 8)); y = (X[:, 0] > 0).astype(int)
Xs = sp.random(600, 50, density=0.1, format="csr", random_state=0); y3 = rng.integers(0, 3, 600)
saba = dict(solver="saba", max_epochs=2, random_state=0)
ref = dict(solver="reference", max_iter=3, random_state=0)
fits = [
    lambda: BilevelLogisticRegressionCV(**saba).fit(X, y),
    lambda: BilevelLogisticRegressionCV(**ref).fit(X, y),
    lambda: BilevelLogisticRegressionCV(cv=3, **saba).fit(X, y),
    lambda: BilevelLogisticRegressionCV(**saba).fit(Xs, y3),
    lambda: BilevelRidgeCV(**saba).fit(X, X[:, 1]),
    lambda: BilevelRidgeCV(**ref).fit(X, X[:, 1]),
]
times = []
for _ in range(2):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit in fits:
            fit()
    times.append(time.perf_counter() - start)
print(json.dumps({"first": times[0], "second": times[1]}))
"""


def compile_times():
    """Cold and warm first-fit compile times (first minus second pass, fresh interpreters)."""
    cold, warm = _common.run_cold_and_warm(_COMPILE_SNIPPET)
    return {
        "compile_cold_s": cold["first"] - cold["second"],
        "compile_warm_s": warm["first"] - warm["second"],
    }


#: Plot style of each role of a method: legend label, color, marker.
ROLE_STYLE = {
    "reference": ("LogisticRegressionCV / RidgeCV (the reference)", "black", "o"),
    "grid": ("GridSearchCV, 20 values, cv=5", "tab:gray", "s"),
    "scaled": ("StandardScaler + LogisticRegressionCV", "tab:brown", "X"),
    "untuned": ("LogisticRegression C=1, untuned", "tab:orange", "D"),
    "optuna": ("Optuna TPE, per-feature", "tab:purple", "*"),
    "bilevel scalar holdout": ("Bilevel, scalar, holdout", "tab:green", "v"),
    "bilevel scalar cv": ("Bilevel, scalar, cv=5", "tab:olive", "<"),
    "bilevel per-feature holdout": ("Bilevel, per-feature, holdout", "tab:red", ">"),
    "bilevel per-feature cv": ("Bilevel, per-feature, cv=5", "tab:blue", "P"),
    "bilevel per-feature holdout free": ("Bilevel, per-feature, holdout, spread_penalty=0",
                                         "tab:pink", "^"),
    "bilevel per-feature cv free": ("Bilevel, per-feature, cv=5, spread_penalty=0",
                                    "tab:cyan", "p"),
}


def plot(rows):
    plt = _common.pyplot()
    from matplotlib.ticker import NullFormatter

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    n_cols = min(3, len(datasets))
    n_rows = -(-len(datasets) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 4.0 * n_rows + 1.2),
                             squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        sub = [r for r in rows if r["dataset"] == dataset and r.get("fit_time_s") is not None]
        regression = any("test_mse" in r for r in sub)
        key = "test_mse" if regression else "test_log_loss"
        for r in sub:
            if r.get(key) is None or not np.isfinite(r[key]):
                continue
            _, color, marker = ROLE_STYLE[r["role"]]
            ax.scatter(r["fit_time_s"], r[key], color=color, marker=marker,
                       s=110 if marker == "*" else 60, alpha=0.85, zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
        ax.set_title(dataset)
        ax.set_xlabel("fit wall time (s, log scale)")
        ax.set_ylabel("test MSE" if regression else "test log-loss")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    roles = list(dict.fromkeys(r["role"] for r in rows))
    handles = [plt.Line2D([], [], linestyle="", marker=ROLE_STYLE[role][2],
                          color=ROLE_STYLE[role][1], markersize=9, label=ROLE_STYLE[role][0])
               for role in roles]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle("Test loss against fit wall time (lower left is better)")
    fig.tight_layout(rect=(0, 1.1 / (4.0 * n_rows + 1.2), 1, 0.97))
    return _common.save_figure(fig, RESULTS_NAME)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="IJCNN1 on 10,000 rows, 20 Newsgroups on 2,000 posts and "
                             "5,000 terms, 20 Optuna trials, no compile-time run")
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated subset of {','.join(DATASETS)}")
    parser.add_argument("--optuna-trials", type=int, default=None,
                        help="Optuna trials on IJCNN1 (default 100; 20 with --quick)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the splits and subsamples (default 0)")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the cold/warm Numba compile-time measurement")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads of every method (default 1, like n_jobs=1)")
    args = parser.parse_args(argv)
    with _common.limit_blas_threads(args.blas_threads):
        run(args, parser)


def run(args, parser):
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = set(datasets) - set(DATASETS)
    if unknown:
        parser.error(f"unknown datasets {sorted(unknown)}")
    trials = args.optuna_trials or (20 if args.quick else 100)
    env = _common.environment()
    env["optuna"] = _optuna_version()
    env["quick"] = args.quick
    env["blas threads"] = args.blas_threads
    _common.print_environment()
    rows = []
    start = time.perf_counter()
    for dataset in datasets:
        case = LOADERS[dataset](args.quick, args.seed, args.data_home)
        print(f"\n{dataset}: {case.X.shape[0]} fitting rows, {case.X_test.shape[0]} test rows, "
              f"{case.X.shape[1]} features; {case.prep} (load {os.getloadavg()[0]:.2f})",
              flush=True)
        dataset_start = time.perf_counter()
        rows += run_dataset(dataset, case, trials, args.seed)
        env[f"time {dataset} (s)"] = round(time.perf_counter() - dataset_start, 1)
    if not (args.no_compile or args.quick):
        env.update({k: round(v, 2) for k, v in compile_times().items()})
    env["total time (s)"] = round(time.perf_counter() - start, 1)
    env["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    _common.print_table(rows, ["dataset", "method", "fit_time_s", "time_ratio_to_ref",
                               "test_log_loss", "test_accuracy", "test_mse", "test_r2",
                               "target_met"], title="\nSummary")
    print(f"\nResults written to {_common.save_results(rows, RESULTS_NAME, COLUMNS)}")
    _common.save_results([{"key": k, "value": v} for k, v in env.items()],
                         RESULTS_NAME + "_env")
    print(f"Figure written to {plot(rows)}")


def _optuna_version():
    try:
        import optuna
    except ImportError:
        return "not installed"
    return optuna.__version__


if __name__ == "__main__":
    main()
