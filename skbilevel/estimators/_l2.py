"""Tuning of L2 strengths (scalar, per feature, per group of features)."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..problems import FeatureL2, GroupedL2, ScalarL2
from ._base import BaseBilevelEstimator


class BaseL2Tuner(BaseBilevelEstimator):
    """Base class of the estimators that tune L2 strengths ``exp(x)``.

    The inner objective on a training split of ``n`` rows is
    ``(1/n) sum_i w_i l(y_i, u_i) + (1/2) sum_k alpha_k ||coef_k||^2`` with
    ``alpha = exp(x)`` one strength per feature (``penalty="per_feature"``),
    one for all (``"scalar"``) or one per group of features (``"grouped"``,
    with ``groups``). With several folds the strengths are shared and the
    outer objective averages the folds' validation losses. To that average
    the outer objective adds ``(spread_penalty / (2 m)) ||c - mean(c)||^2``,
    ``c = x - log(s)`` with ``s`` the mean squares of the features' non-zero
    values (of each group's features) on the training rows and ``m`` the
    number of validation rows in all: a Gaussian prior on the log-strengths around
    their common level, relative to the features' scales so that it does not
    depend on their units, worth ``spread_penalty`` validation rows. It keeps
    many strengths from fitting the noise of few validation rows, and leaves
    a single strength free.

    The refit on all ``n_samples`` rows keeps scikit-learn's ``C = 1 / (n alpha)``
    (the strength of a *sum* over the rows) fixed: its strengths are
    ``alpha_ * n / n_samples``, with ``n`` the mean size of the training splits.
    """

    _parameter_constraints: dict = {
        **BaseBilevelEstimator._parameter_constraints,
        "penalty": [StrOptions({"per_feature", "scalar", "grouped"})],
        "groups": [None, "array-like"],
        "cv": [None, Interval(Integral, 2, None, closed="left"), "cv_object"],
        "n_jobs": [None, Integral],
        "spread_penalty": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, penalty="per_feature", groups=None, spread_penalty=1.0,
                 solver="auto", cv=None,
                 validation_fraction=0.25, max_iter=100, max_epochs=30, time_limit=None,
                 tol=1e-6, batch_size=64, step_size=None, outer_step_size=None,
                 fit_intercept=True, warm_start=False, n_jobs=None, random_state=None,
                 verbose=0, refit=True):
        self.penalty = penalty
        self.groups = groups
        self.spread_penalty = spread_penalty
        self.solver = solver
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.max_iter = max_iter
        self.max_epochs = max_epochs
        self.time_limit = time_limit
        self.tol = tol
        self.batch_size = batch_size
        self.step_size = step_size
        self.outer_step_size = outer_step_size
        self.fit_intercept = fit_intercept
        self.warm_start = warm_start
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.refit = refit

    def _hyperparameter_map(self, n_features, n_train):
        if self.penalty == "grouped":
            if self.groups is None:
                raise ValueError('penalty="grouped" needs groups, one group index per feature.')
            return GroupedL2(np.asarray(self.groups))
        if self.groups is not None:
            raise ValueError(
                f'groups is only used with penalty="grouped"; got penalty={self.penalty!r}.'
            )
        return ScalarL2() if self.penalty == "scalar" else FeatureL2()

    def _spread_penalty(self, n_val):
        return self.spread_penalty / n_val

    def _strengths_per_feature(self, x, n_features):
        hmap = self._hyperparameter_map(n_features, 1).bind(n_features, 1)
        return hmap.l2_strengths(x)

    @staticmethod
    def _mean_train_size(splits):
        return float(np.mean([len(train) for train, _ in splits]))

    def _refit_setup(self, x, splits, n_samples, sample_weight):
        n_features = self.n_features_in_
        scale = self._mean_train_size(splits) / n_samples
        return sample_weight, self._strengths_per_feature(x, n_features) * scale

    def _set_hyperparameters(self, x, splits, n_samples, sample_weight):
        alpha = np.exp(x)
        n_train = self._mean_train_size(splits)
        if self.penalty == "scalar":
            self.alpha_ = float(alpha[0])
            self.C_ = float(1.0 / (n_train * alpha[0]))
        else:
            self.alpha_ = alpha
            self.C_ = 1.0 / (n_train * alpha)
