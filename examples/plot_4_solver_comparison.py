"""
=====================================
Comparing solvers on one problem
=====================================

Every solver of :mod:`skbilevel.solvers` can run inside an estimator
(``solver=...``). This example tunes the 22 per-feature strengths of a
logistic regression on IJCNN1, the benchmark of the SOBA/SABA paper, with six
of them under the same time budget, and overlays their runs with
:class:`~skbilevel.ConvergenceDisplay`. Without the IJCNN1 files it runs on
synthetic data of the same shape.

The measured figures of every solver with more time, on IJCNN1 and on MNIST
hyper-cleaning, are in :ref:`solvers`.
"""

# %%
# The problem
# -----------
#
# IJCNN1 comes with a split: 35,000 rows to train on and 14,990 to validate
# on. An explicit ``cv=[(train, validation)]`` makes the estimators use it.
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning

from skbilevel import BilevelLogisticRegressionCV, ConvergenceDisplay
from skbilevel.datasets import data_available, load_ijcnn1

if data_available("ijcnn1"):
    data = load_ijcnn1()
    X = sp.vstack([data.X_train, data.X_val]).tocsr()
    y = np.concatenate([data.y_train, data.y_val])
    n_train = data.X_train.shape[0]
    print("IJCNN1")
else:
    X, y = make_classification(n_samples=49_990, n_features=22, n_informative=10,
                               weights=[0.9], random_state=0)
    n_train = 35_000
    print("IJCNN1 is not in the data folder (set SKBILEVEL_DATA): synthetic data")
split = [(np.arange(n_train), np.arange(n_train, X.shape[0]))]
print(f"{n_train} training rows, {X.shape[0] - n_train} validation rows, "
      f"{X.shape[1]} features")

# %%
# Six solvers, three seconds each
# -------------------------------
#
# ``time_limit`` caps every run at 3 seconds of solver time, ``max_epochs`` is
# large enough not to stop them first. ``refit=False`` skips the final fit on
# all rows, which does not matter here. ``"reference"`` is the deterministic
# solver (Newton inner solves, exact linear system, L-BFGS-B outside); the
# others are stochastic, with step sizes derived from the problem. The first
# fit of each solver in a fresh environment includes the compilation of its
# Numba kernels (cached on disk afterwards), which is not solver time.
solvers = ["reference", "saba", "soba", "amigo", "stocbio", "sid"]
fitted = {}
for solver in solvers:
    model = BilevelLogisticRegressionCV(
        solver=solver, cv=split, time_limit=3.0, max_epochs=1000, refit=False,
        random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Stopping on the time limit is expected here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    wall = time.perf_counter() - start
    history = model.history_
    fitted[solver] = model
    print(f"{solver:>9s}: validation log-loss {history['outer_objective'][-1]:.5f} "
          f"after {history['time'][-1]:4.1f} s of solver time, "
          f"{history['epoch'][-1]:6.1f} epochs ({wall:.1f} s wall)")

# %%
# The runs side by side
# ---------------------
#
# Pass the ``axes_`` of the first display to the next ones to overlay them.
# On the left, the validation log-loss at the current model; on the right,
# the norm of the solver's hypergradient estimate (per outer iteration for the
# reference, per epoch for the others). For the reference, an "epoch" is an
# outer iteration, so only the time axis compares all of them.
display = None
for solver, model in fitted.items():
    display = ConvergenceDisplay.from_estimator(
        model, x="time", name=solver, ax=None if display is None else display.axes_
    )
# Zoom on the end of the runs: the lowest final value and twice it.
lowest = min(model.history_["outer_objective"][-1] for model in fitted.values())
display.axes_[0].set_ylim(0.9 * lowest, 2 * lowest)
display.figure_.suptitle("Per-feature L2 strengths of a logistic regression")
# One legend for both panels, below them, clear of the curves.
display.axes_[0].get_legend().remove()
display.figure_.legend(*display.axes_[0].get_legend_handles_labels(),
                       loc="outside lower center", ncols=len(fitted))

# %%
# What to read in it, on IJCNN1 (on the synthetic fallback, an easier
# problem, the runs end closer together): the single-loop solvers (SABA,
# SOBA) update the strengths many times per pass over the data and are the
# first to bring the validation loss down; SABA's variance reduction lets
# its hypergradient estimate keep shrinking where SOBA's stays noisy. The
# double-loop solvers (AmIGO, stocBiO, SID) make one outer step per inner
# solve, and the reference solver spends its first seconds on exact Newton
# solves over all rows. See :ref:`solvers` for the figures with longer
# budgets.
