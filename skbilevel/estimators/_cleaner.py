"""HyperCleaner: one learned weight per training sample (data hyper-cleaning)."""

from numbers import Real

import numpy as np
from scipy.special import expit
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval

from ..problems import SampleWeights
from ._base import BaseBilevelEstimator
from ._classifier import LinearClassifierMixin


class HyperCleaner(LinearClassifierMixin, BaseBilevelEstimator):
    """Logistic regression that learns which training labels to trust.

    Data hyper-cleaning (``003`` section 4.2): every training row ``i`` gets
    a weight ``sigmoid(x_i)`` in (0, 1) in the training loss, and the
    weights follow the hypergradient of the log-loss on validation rows the
    user trusts, so that rows whose labels disagree with the validation data
    get weights near zero. The training objective on ``n`` rows is
    ``(1/n) sum_i w_i sigmoid(x_i) l(y_i, u_i) + (l2 / 2) ||coef||^2``
    (binary logistic or multinomial loss). Then the model is refitted on
    all rows, the training rows with their learned weights and the trusted
    rows with weight 1.

    The trusted rows are given to :meth:`fit` as a boolean mask
    ``trusted`` (routed as metadata, like ``sample_weight``); without it
    a random ``validation_fraction`` of the rows (stratified) is taken as
    trusted. The per-sample hyperparameters belong to one split, so there is
    no ``cv``.

    Parameters
    ----------
    l2 : float, default=2e-3
        The fixed L2 strength (``2 C_r`` in the papers' notation, where
        ``C_r = 1e-3``).
    solver : str, default="auto"
        ``"reference"`` or a stochastic solver of
        :data:`skbilevel.solvers.SOLVERS`; ``"auto"`` runs the reference on
        small data (training rows times coefficients at most 300,000) and
        SABA otherwise (checked as in ``BilevelLogisticRegressionCV``).
    validation_fraction : float in (0, 1), default=0.25
        Share of the rows taken as trusted when ``trusted`` is not given.
    max_iter, max_epochs, time_limit, tol, batch_size, step_size, \
outer_step_size, fit_intercept, random_state, verbose
        As in :class:`BilevelLogisticRegressionCV`.
    warm_start : bool, default=False
        Start from the weights of the previous fit (same number of training
        rows).
    refit : bool, default=True
        Refit on all rows with the learned weights (the strength scaled to
        keep ``C = 1 / (n l2)`` fixed); otherwise keep the model fitted on the
        training rows.

    Attributes
    ----------
    sample_weight_ : ndarray of shape (n_samples,)
        Weight of every row of ``X`` in the final fit: ``sigmoid(x_i)`` times
        the user's ``sample_weight`` on the training rows, the user's weight
        (or 1) on the trusted rows.
    trusted_ : ndarray of bool of shape (n_samples,)
        The rows that validated.
    classes_, coef_, intercept_, x_, n_iter_, best_score_, history_, solver_, \
n_features_in_, feature_names_in_
        As in :class:`BilevelLogisticRegressionCV` (``x_`` holds the logits
        of the training rows' weights).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skbilevel import HyperCleaner
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> rng = np.random.RandomState(0)
    >>> y_noisy = np.where(rng.rand(len(y)) < 0.3, rng.randint(10, size=len(y)), y)
    >>> trusted = rng.rand(len(y)) < 0.2
    >>> y_noisy[trusted] = y[trusted]
    >>> cleaner = HyperCleaner(random_state=0).fit(X, y_noisy, trusted=trusted)
    >>> cleaner.score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **BaseBilevelEstimator._parameter_constraints,
        "l2": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, l2=2e-3, solver="auto", validation_fraction=0.25, max_iter=100,
                 max_epochs=30, time_limit=None, tol=1e-6, batch_size=64, step_size=None,
                 outer_step_size=None, fit_intercept=True, warm_start=False,
                 random_state=None, verbose=0, refit=True):
        self.l2 = l2
        self.solver = solver
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
        self.random_state = random_state
        self.verbose = verbose
        self.refit = refit

    def _hyperparameter_map(self, n_features, n_train):
        return SampleWeights(l2=float(self.l2))

    def _splits(self, X, y, seed, trusted=None):
        if trusted is None:
            return self._holdout(X, y, seed, stratify=True)
        trusted = np.asarray(trusted)
        if trusted.shape != (X.shape[0],):
            raise ValueError(
                f"trusted must be a boolean mask with one entry per sample "
                f"({X.shape[0]}); its shape is {trusted.shape}."
            )
        if trusted.dtype != bool:
            raise ValueError(f"trusted must be a boolean mask; its dtype is {trusted.dtype}.")
        if not trusted.any():
            raise ValueError("trusted has no True entry: there is no row to validate on.")
        if trusted.all():
            raise ValueError("trusted is True everywhere: there is no row to clean.")
        return [(np.flatnonzero(~trusted), np.flatnonzero(trusted))]

    def _learned_weights(self, x, splits, n_samples, sample_weight):
        train, val = splits[0]
        weights = np.ones(n_samples) if sample_weight is None else sample_weight.copy()
        weights[train] *= expit(x)
        return weights

    def _refit_setup(self, x, splits, n_samples, sample_weight):
        n_train = len(splits[0][0])
        strengths = np.full(self.n_features_in_, float(self.l2) * n_train / n_samples)
        return self._learned_weights(x, splits, n_samples, sample_weight), strengths

    def _set_hyperparameters(self, x, splits, n_samples, sample_weight):
        self.sample_weight_ = self._learned_weights(x, splits, n_samples, sample_weight)
        self.trusted_ = np.zeros(n_samples, dtype=bool)
        self.trusted_[splits[0][1]] = True

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, trusted=None):
        """Learn a weight per training row, then fit the model with them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels, possibly wrong outside the trusted rows.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights that multiply the learned ones.
        trusted : array-like of bool of shape (n_samples,), default=None
            Rows whose labels are clean: the validation rows. None: a random
            ``validation_fraction`` of the rows.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, trusted=trusted)
