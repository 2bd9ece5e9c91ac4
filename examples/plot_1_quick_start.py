"""
===========================================
Quick start: one ridge strength per feature
===========================================

A grid search can tune one regularization strength. :class:`~skbilevel.BilevelRidgeCV`
tunes one per feature: the model is fitted on training rows, and the strengths
follow the gradient of the error on validation rows. This example fits it on
synthetic data where only 10 of 100 features matter, compares it with
scikit-learn's :class:`~sklearn.linear_model.RidgeCV`, and draws what the fit
learned with :class:`~skbilevel.StrengthsDisplay` and
:class:`~skbilevel.ConvergenceDisplay`.
"""

# %%
# Data: 100 features, 10 of them useful
# -------------------------------------
#
# The target is a linear function of the first 10 features plus Gaussian noise
# of variance 4: the true coefficients have an expected test mean squared
# error of 4.
import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_squared_error

from skbilevel import BilevelRidgeCV, ConvergenceDisplay, StrengthsDisplay

rng = np.random.RandomState(0)
n_samples, n_features, n_useful = 1000, 100, 10
coef = np.zeros(n_features)
coef[:n_useful] = 2 * rng.randn(n_useful)
X = rng.randn(2 * n_samples, n_features)
y = X @ coef + 2 * rng.randn(2 * n_samples)
X_train, y_train = X[:n_samples], y[:n_samples]
X_test, y_test = X[n_samples:], y[n_samples:]

# %%
# Fit
# ---
#
# ``cv=3``: the 100 strengths are shared by three folds and follow the gradient
# of their average validation error; then the model is refitted on all the
# training rows with them. ``solver="auto"`` picks the stochastic solver SABA
# on data of this size.
model = BilevelRidgeCV(cv=3, random_state=0).fit(X_train, y_train)
grid = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X_train, y_train)

print(f"solver: {model.solver_}, {model.n_iter_} epochs")
print(f"test MSE, RidgeCV (one strength, 13 values):    "
      f"{mean_squared_error(y_test, grid.predict(X_test)):.3f}")
print(f"test MSE, BilevelRidgeCV (one per feature):      "
      f"{mean_squared_error(y_test, model.predict(X_test)):.3f}")
print(f"test MSE of the true coefficients:               "
      f"{mean_squared_error(y_test, X_test @ coef):.3f}")

# %%
# The learned strengths ``alpha_`` are in the units of a mean over the training
# rows; ``C_`` gives them in scikit-learn's units (``C = 1 / (n alpha)``).
# The noise features get strengths far above those of the useful ones. They
# are not pushed to the top of the solvers' box, ``exp(15)``: the default
# ``spread_penalty=1`` is a prior that keeps the log-strengths near their
# common level, as heavy as one validation row (``spread_penalty=0`` frees
# them).
useful = np.arange(n_features) < n_useful
print(f"median strength of the 10 useful features: {np.median(model.alpha_[useful]):.2g}")
print(f"median strength of the 90 others:          {np.median(model.alpha_[~useful]):.2g}")

# %%
# :class:`~skbilevel.StrengthsDisplay` shows the strengths on a log scale.
# With more than ``max_features`` of them it shows those farthest from the
# median, a noise feature's: the ten useful features, far below it, and the
# noise features farthest from it on either side.
names = [f"useful {k}" if k < n_useful else f"noise {k}" for k in range(n_features)]
StrengthsDisplay.from_estimator(model, feature_names=names, max_features=25)

# %%
# How the run went
# ----------------
#
# ``history_`` records, per epoch (one pass over the training rows), the
# solver time, the validation objective (here half the mean squared error on
# the validation folds) and the norm of the hypergradient estimate.
# :class:`~skbilevel.ConvergenceDisplay` draws it. The first entries have no
# hypergradient norm: the starting point, and the warm-up epochs in which
# the model settles before the first outer step.
#
# The run stopped when the norm fell below ``tol``, with the validation
# objective still falling: what is recorded is the validation objective of
# the solver's current model, which follows the strengths with a lag (see
# :ref:`history`). The refit on all the training rows, which made the
# predictions above, fits the model exactly.
print({key: value.shape for key, value in model.history_.items()})
ConvergenceDisplay.from_estimator(model, x="epoch")
