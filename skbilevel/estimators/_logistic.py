"""BilevelLogisticRegressionCV: L2 strengths of a logistic regression tuned by gradient."""

from sklearn.base import _fit_context

from ._classifier import LinearClassifierMixin
from ._l2 import BaseL2Tuner


class BilevelLogisticRegressionCV(LinearClassifierMixin, BaseL2Tuner):
    """Logistic regression with L2 strengths tuned on validation data by gradient.

    The model is fitted on a training split (the inner problem) and the L2
    strengths ``alpha = exp(x)`` follow the hypergradient of the validation
    log-loss (the outer problem), obtained by implicit differentiation. One
    strength per feature (the default), one for all, or one per group of
    features; then the model is refitted on all the data with the learned
    strengths. Two classes use the binary logistic loss, more the
    multinomial loss.

    The training objective on ``n`` rows is
    ``(1/n) sum_i w_i l(y_i, u_i) + (1/2) sum_k alpha_k ||coef_k||^2``: for
    ``penalty="scalar"``, ``alpha = 1 / (n C)`` in scikit-learn's units.

    Parameters
    ----------
    penalty : {"per_feature", "scalar", "grouped"}, default="per_feature"
        One L2 strength per feature, a single one, or one per group of
        features (given by ``groups``). The intercept is never penalized.
    groups : array-like of int of shape (n_features,), default=None
        Group ``0, ..., n_groups - 1`` of each feature, for
        ``penalty="grouped"``.
    spread_penalty : float, default=1.0
        Weight of ``(1/2) ||c - mean(c)||^2`` in the outer objective, in units
        of one validation row's loss (it is divided by the number of
        validation rows), with ``c = x - log(s)``, ``s`` the mean squares of
        the features' non-zero values (averaged over each group's) on the
        training rows: a
        Gaussian prior that keeps the log-strengths ``x`` of
        ``"per_feature"`` and ``"grouped"`` near their common level, relative
        to the features' scales (a feature in other units gets its strength
        rescaled at no cost), so that many strengths do not fit the noise of
        few validation rows. 0 tunes each strength freely. No effect with
        ``penalty="scalar"``.
    solver : str, default="auto"
        ``"reference"`` (deterministic: Newton inner solves, exact linear
        system, L-BFGS-B over the strengths) or a stochastic solver of
        :data:`skbilevel.solvers.SOLVERS` (``"saba"``, ``"soba"``,
        ``"amigo"``, ``"sid"``, ``"stocbio"``, ``"aid"``, ``"itd"``).
        ``"auto"`` runs the reference on small data (training rows times
        coefficients at most 300,000) and SABA otherwise; then the reference
        too if SABA's model lags behind its strengths (see ``best_score_``).
    cv : int, cross-validation generator, iterable or None, default=None
        None: one random holdout of ``validation_fraction`` of the rows
        (stratified). An int ``k``: stratified shuffled ``k``-fold. A splitter
        or (train, validation) index pairs. With several folds the strengths
        are shared and the outer objective averages the folds' validation
        losses.
    validation_fraction : float in (0, 1), default=0.25
        Share of the rows that validate when ``cv`` is None.
    max_iter : int, default=100
        Outer iterations of the reference solver.
    max_epochs : float, default=30
        Budget of the stochastic solvers, in passes over the training rows.
    time_limit : float or None, default=None
        Budget of any solver in seconds.
    tol : float, default=1e-6
        The reference stops when the largest entry of the projected
        hypergradient is at most ``tol``; a stochastic solver when the norm of
        an epoch's mean hypergradient estimate is.
    batch_size : int, default=64
        Rows per training minibatch of the stochastic solvers (SABA's
        validation minibatches are scaled by the ratio of the splits' sizes).
    step_size, outer_step_size : float or None, default=None
        Steps of the stochastic solvers (inner and linear system; outer).
        None: derived from the problem.
    fit_intercept : bool, default=True
        Whether to fit an unpenalized intercept.
    warm_start : bool, default=False
        Start from the strengths of the previous fit (same shape).
    n_jobs : int or None, default=None
        With several folds, threads over the folds' rows in full-data
        derivatives (the reference solver). The kernels release the GIL.
    random_state : int, RandomState instance or None, default=None
        Draws the split and the solver's minibatches.
    verbose : int, default=0
        0 silent; 1 a line per outer iteration or epoch (time, validation
        loss, hypergradient norm); 2 also the split sizes.
    refit : bool, default=True
        Refit on all rows with the learned strengths (the same ``C_``);
        otherwise keep the model of the training split (the folds' average).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    alpha_ : float or ndarray of shape (n_features,) or (n_groups,)
        Learned strengths ``exp(x)``, on the training split's scale.
    C_ : float or ndarray
        The equivalent scikit-learn ``C``, ``1 / (n alpha_)`` with ``n`` the
        (mean) number of training rows.
    x_ : ndarray
        The outer variable, ``log(alpha_)``.
    n_iter_ : int
        Outer iterations (reference) or recorded epochs (stochastic solvers).
    best_score_ : float
        Validation score at the end: minus the (fold-averaged) log-loss of
        the exact fit at ``alpha_`` on models whose Hessian has at most
        1,000 rows (per fold) and costs at most 1e10 multiply-adds (training
        rows times its rows squared), of the solver's last model on others,
        where a stochastic solver's lags behind the exact fit (see the user
        guide, *Reading history_*). On small models, a stochastic solver
        whose last model scored more than 1% better than the exact fit
        (it drew the strengths where the exact fit is worse) raises a
        ``ConvergenceWarning``, or, with ``solver="auto"``, is replaced by
        the reference.
    history_ : dict of ndarray
        Per outer iteration or epoch: ``time``, ``epoch``,
        ``outer_objective`` (what the solver minimizes: validation log-loss
        plus the spread penalty), ``validation_score`` (its negative) and
        ``grad_norm`` (hypergradient norm).
    solver_ : str
        The solver that ran.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has string column names.

    See Also
    --------
    sklearn.linear_model.LogisticRegressionCV : a grid over one strength.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbilevel import BilevelLogisticRegressionCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), BilevelLogisticRegressionCV(random_state=0))
    >>> model.fit(X, y).score(X, y) > 0.95
    True
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Tune the L2 strengths, then fit the model with them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (two or more classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows in the training loss (the
            validation loss is unweighted).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight)
