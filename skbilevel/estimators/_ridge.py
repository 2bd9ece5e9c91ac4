"""BilevelRidgeCV: ridge strengths tuned by gradient on validation data."""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context

from ._l2 import BaseL2Tuner


class BilevelRidgeCV(RegressorMixin, BaseL2Tuner):
    """Ridge regression with L2 strengths tuned on validation data by gradient.

    The squared-loss counterpart of :class:`BilevelLogisticRegressionCV`:
    the training objective on ``n`` rows is
    ``(1/n) sum_i w_i (u_i - y_i)^2 / 2 + (1/2) sum_k alpha_k coef_k^2`` and
    the strengths ``alpha = exp(x)`` (per feature, scalar or per group)
    follow the hypergradient of the validation mean squared error. For
    ``penalty="scalar"`` scikit-learn's ``Ridge(alpha=n * alpha_)`` fits the
    same model on the same ``n`` rows.

    Parameters
    ----------
    penalty, groups, spread_penalty, solver, cv, validation_fraction, max_iter, \
max_epochs, time_limit, tol, batch_size, step_size, outer_step_size, fit_intercept, \
warm_start, n_jobs, random_state, verbose, refit
        As in :class:`BilevelLogisticRegressionCV`; ``cv`` splits are not
        stratified.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    alpha_ : float or ndarray of shape (n_features,) or (n_groups,)
        Learned strengths ``exp(x)``, on the training split's scale.
    C_ : float or ndarray
        ``1 / (n alpha_)``, ``n`` the (mean) number of training rows.
    x_ : ndarray
        ``log(alpha_)``.
    n_iter_ : int
    best_score_ : float
        Minus the validation mean squared error at the end (fold-averaged),
        as scikit-learn's ``neg_mean_squared_error``, of the solver's last
        model (see ``BilevelLogisticRegressionCV.best_score_``).
    history_ : dict of ndarray
        ``time``, ``epoch``, ``outer_objective`` (half the validation mean
        squared error, plus the spread penalty), ``validation_score`` (minus
        twice ``outer_objective``: the mean squared error when the spread
        penalty is 0), ``grad_norm``.
    solver_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)

    See Also
    --------
    sklearn.linear_model.RidgeCV : a grid over one strength.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelRidgeCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> BilevelRidgeCV(random_state=0).fit(X, y).score(X, y) > 0.4
    True
    """

    def _loss(self):
        return "squared"

    def _encode_targets(self, y):
        if y.ndim != 1:
            raise ValueError(f"BilevelRidgeCV supports a 1D target only; y has shape {y.shape}.")
        return np.asarray(y, dtype=np.float64)

    def _score_from_objective(self, value):
        return -2.0 * np.asarray(value, dtype=float)

    def _set_coef(self, z, problem):
        super()._set_coef(z, problem)
        self.coef_, self.intercept_ = self.coef_[0], float(self.intercept_[0])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Tune the ridge strengths, then fit the model with them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows in the training loss (the
            validation loss is unweighted).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight)

    def predict(self, X):
        """Predict the target of every sample of ``X``."""
        return self._decision(X).ravel()
