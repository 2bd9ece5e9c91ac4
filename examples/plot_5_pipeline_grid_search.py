"""
==============================================
Replacing a GridSearchCV inside a Pipeline
==============================================

The usual way to tune the regularization of a logistic regression is a
:class:`~sklearn.model_selection.GridSearchCV` over ``C`` around a
:class:`~sklearn.pipeline.Pipeline`. A
:class:`~skbilevel.BilevelLogisticRegressionCV` step tunes its strength
itself, by gradient, so the grid can go; and since it is an ordinary
scikit-learn estimator, a grid search can still choose what is discrete, such
as the kind of penalty, while the strengths are tuned continuously inside.
"""

# %%
# The grid search to replace
# --------------------------
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelLogisticRegressionCV

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, stratify=y, random_state=0
)

pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
grid = GridSearchCV(pipe, {"clf__C": np.logspace(-3, 3, 20)}, cv=5, scoring="neg_log_loss")
start = time.perf_counter()
grid.fit(X_train, y_train)
print(f"GridSearchCV: C = {grid.best_params_['clf__C']:.3f} "
      f"(20 values x 5 folds, {time.perf_counter() - start:.1f} s), "
      f"test log-loss {log_loss(y_test, grid.predict_proba(X_test)):.4f}")

# %%
# The same pipeline, tuned by gradient
# ------------------------------------
#
# One strength (``penalty="scalar"``), shared by the same 5 folds. ``C_`` is
# in scikit-learn's units, so it reads like the grid's best ``C``; the
# model is then refitted on all the training rows with that ``C``.
bilevel = Pipeline([
    ("scale", StandardScaler()),
    ("clf", BilevelLogisticRegressionCV(penalty="scalar", cv=5, random_state=0)),
])
start = time.perf_counter()
bilevel.fit(X_train, y_train)
print(f"BilevelLogisticRegressionCV: C_ = {bilevel[-1].C_:.3f} "
      f"({bilevel[-1].solver_} solver, {time.perf_counter() - start:.1f} s), "
      f"test log-loss {log_loss(y_test, bilevel.predict_proba(X_test)):.4f}")

# %%
# The two land on close values of ``C`` and test losses (the grid can only
# pick one of its 20 values). On data this small neither is expensive; the
# bilevel estimator's cost does not grow with the resolution of a grid, and
# it can tune what a grid cannot, such as one strength per feature.
#
# Grid search over what is discrete
# ---------------------------------
#
# The previous example showed that the best number of strengths depends on
# the data. Let cross-validation choose between one strength and three (one
# per kind of statistic: mean, standard error, worst value). Each candidate
# tunes its strengths by gradient on 3 folds of its training rows; the grid
# search scores the candidates on 5 outer folds.
#
# Why 3 inner folds rather than one holdout (``cv=None``): on 227 rows, a
# holdout has 57 validation rows, nearly separable by a linear model. Then
# the validation log-loss keeps decreasing as the strength shrinks (sharper
# predictions of rows that are all classified right), the strength runs
# towards the bottom of its box and the model is overconfident on new rows;
# the same search with holdouts (same data and seeds) had one outer fold
# score a log-loss of 0.65 that way. Averaging folds makes it less likely.
kind = np.repeat([0, 1, 2], 10)
search = GridSearchCV(
    Pipeline([("scale", StandardScaler()),
              ("clf", BilevelLogisticRegressionCV(cv=3, random_state=0))]),
    [
        {"clf__penalty": ["scalar"]},
        {"clf__penalty": ["grouped"], "clf__groups": [kind]},
    ],
    cv=5, scoring="neg_log_loss",
)
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X_train, y_train)
print(f"{2 * 5 + 1} fits in {time.perf_counter() - start:.1f} s")
for params, mean, std in zip(search.cv_results_["params"],
                             search.cv_results_["mean_test_score"],
                             search.cv_results_["std_test_score"]):
    print(f"  penalty={params['clf__penalty']!r:10s} cross-validated log-loss "
          f"{-mean:.4f} (+/- {std:.4f})")
best = search.best_estimator_[-1]
print(f"chosen: penalty={best.penalty!r}, strengths {np.round(best.alpha_, 4)}; "
      f"test log-loss {log_loss(y_test, search.predict_proba(X_test)):.4f}")

# %%
# The candidates' fits are independent: ``GridSearchCV(n_jobs=...)`` runs
# them in parallel through joblib, and
# :ref:`sphx_glr_auto_examples_plot_6_dask_backend.py` sends them to a
# cluster.
