"""Bilevel problems of linear models: hyperparameter tuning of GLMs."""

import numpy as np

from . import _kernels
from ._base import BilevelProblem
from ._design import DesignMatrix
from ._losses import check_loss
from ._maps import FeatureL2, GroupedL2, HyperparameterMap

#: The power iteration of :meth:`LinearBilevelProblem.feature_smoothness`: at
#: most this many products with ``X^T W X``, stopped at this relative change,
#: and the estimate (from below) multiplied by this margin.
POWER_ITERATIONS, POWER_RTOL, POWER_SAFETY = 30, 1e-3, 1.05

_NO_MATRIX = np.empty((0, 0))
_NO_VECTOR = np.empty(0)


class LinearBilevelProblem(BilevelProblem):
    """A linear model fitted on a training split, evaluated on a validation split.

    Inner objective (ALGORITHMS.md, section 2)::

        G(z, x) = (1/n) sum_i w_i s_i(x) l(y_i, u_i) + (1/2) sum_k r_k(x) ||z_k||^2

    with margins ``u_i = z [d_i, 1]`` (the intercept is never penalized),
    fixed user weights ``w_i`` and the hyperparameter map's ``s(x)`` and
    ``r(x)``. Outer objective: the mean loss ``F(z) = (1/m) sum_j v_j l(y_j, u_j)``
    on the validation split, with fixed weights ``v_j`` (by default 1), plus
    an optional penalty on the spread of the log-strengths relative to the
    features' scales, ``(spread_penalty / 2) ||c - mean(c)||^2`` with
    ``c = x - spread_offset``: a Gaussian prior that ties the strengths
    together (it leaves their common level free) in a way that does not
    depend on the features' units (the scale of a feature is that of its
    non-zero values, so that rare and frequent words of a text are alike).

    Parameters
    ----------
    X_train, X_val : array-like or sparse matrix
        Training and validation features (dense or CSR).
    y_train, y_val : array-like
        Targets, in the form the loss takes (``+-1`` for ``"logistic"``,
        class indices for ``"multinomial"``, real values for ``"squared"``).
    loss : {"logistic", "multinomial", "squared"} or Loss, default="logistic"
        The per-sample loss.
    hyperparams : HyperparameterMap, default=FeatureL2()
        How ``x`` sets the strengths and sample weights.
    fit_intercept : bool, default=True
        Whether to fit an unpenalized intercept.
    sample_weight : array-like of shape (n_train,), default=None
        Fixed non-negative weights ``w_i`` of the training samples.
    val_sample_weight : array-like of shape (n_val,), default=None
        Fixed non-negative weights ``v_j`` of the validation samples.
    spread_penalty : float, default=0.0
        Strength of the penalty on the spread of ``x`` in ``F``, for L2 maps
        (:class:`GroupedL2` and its subclasses) only.

    Attributes
    ----------
    coef_shape : tuple of int
        ``(K, n_features + fit_intercept)``: the shape of ``z`` as a matrix.
    spread_offset : ndarray of shape (n_outer,)
        Centre of the spread penalty: for L2 maps with a spread penalty, the
        log of the mean square of each group's features' non-zero values on
        the training rows (:meth:`GroupedL2.feature_scale_offsets`); zeros
        otherwise.
    """

    def __init__(self, X_train, y_train, X_val, y_val, loss="logistic",
                 hyperparams=None, fit_intercept=True, sample_weight=None,
                 val_sample_weight=None, spread_penalty=0.0):
        self.train = DesignMatrix(X_train, "X_train")
        self.val = DesignMatrix(X_val, "X_val")
        n_features = self.train.shape[1]
        if self.val.shape[1] != n_features:
            raise ValueError(
                f"X_val has {self.val.shape[1]} features but X_train has "
                f"{n_features}."
            )
        self.loss = check_loss(loss)
        self.y_train = self._check_targets(y_train, self.train, "y_train")
        self.y_val = self._check_targets(y_val, self.val, "y_val")
        if hyperparams is None:
            hyperparams = FeatureL2()
        if not isinstance(hyperparams, HyperparameterMap):
            raise ValueError(
                f"hyperparams must be a HyperparameterMap; got {hyperparams!r}."
            )
        self.n_train, self.n_val = self.train.shape[0], self.val.shape[0]
        self.hyperparams = hyperparams.bind(n_features, self.n_train)
        self.fit_intercept = bool(fit_intercept)
        self.sample_weight = _check_weights(sample_weight, self.n_train, "sample_weight")
        self.val_sample_weight = _check_weights(
            val_sample_weight, self.n_val, "val_sample_weight"
        )
        self.spread_penalty = _check_spread_penalty(spread_penalty, self.hyperparams)
        n_outputs = self.loss.n_outputs(self.y_train, self.y_val)
        self.coef_shape = (n_outputs, n_features + self.fit_intercept)
        self.n_inner = n_outputs * self.coef_shape[1]
        self.n_outer = self.hyperparams.n_hyperparams
        self._all_train = np.arange(self.n_train, dtype=np.int64)
        self._all_val = np.arange(self.n_val, dtype=np.int64)
        self.spread_offset = self._spread_offset()
        self._kernel_splits = None

    def _check_targets(self, y, design, name):
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != design.shape[0]:
            raise ValueError(
                f"{name} must be 1D with one entry per row ({design.shape[0]}); "
                f"its shape is {y.shape}."
            )
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric; its dtype is {y.dtype}.")
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity.")
        return self.loss.check_targets(y, name)

    def kernel_arguments(self):
        """The problem as the arrays and scalars the solvers' Numba kernels take.

        Returns ``(train, val, loss, fit_intercept, kind, groups, scale,
        spread_penalty, spread_offset)`` where ``train`` and ``val`` are
        ``(design, y, sample_weight)``: the design as
        ``DesignMatrix.kernel_design``, the targets as float64, or as int64
        class indices for the multinomial loss (the kernels are compiled for
        each kind of design and of targets they meet), and the weights, or
        an empty array when there are none (the kernels then read no weight:
        one memory line less per sampled row).
        """
        if self._kernel_splits is None:  # made once: the solvers ask every epoch
            targets = np.int64 if self.loss.code == _kernels.MULTINOMIAL else np.float64
            self._kernel_splits = tuple(
                (design.kernel_design, y.astype(targets, copy=False),
                 np.zeros(0) if weight is None else weight)
                for design, y, weight in ((self.train, self.y_train, self.sample_weight),
                                          (self.val, self.y_val, self.val_sample_weight))
            )
        return (
            *self._kernel_splits,
            self.loss.code,
            self.fit_intercept,
            *self.hyperparams.kernel_arguments(),
            self.spread_penalty,
            self.spread_offset,
        )

    # -- helpers -----------------------------------------------------------

    def _matrix(self, vector):
        return np.asarray(vector, dtype=np.float64).reshape(self.coef_shape)

    def _penalized(self, coef):
        """The feature columns of a coefficient matrix (not the intercept)."""
        return coef[:, : self.coef_shape[1] - self.fit_intercept]

    def _train_rows(self, rows):
        return self._all_train if rows is None else _check_rows(rows, self.n_train)

    def _val_rows(self, rows):
        return self._all_val if rows is None else _check_rows(rows, self.n_val)

    def _train_weights(self, x, rows):
        """``w_i s_i(x) / |rows|``: the weight of each row in the averages."""
        weights = self.hyperparams.sample_weights(x, rows)
        if self.sample_weight is not None:
            weights = weights * self.sample_weight[rows]
        return weights / len(rows)

    def _train_terms(self, z, x, v, rows, grad, hvp, cross):
        """Data terms of the inner oracles on ``rows``, in one kernel pass."""
        _kernels.batch_derivatives(
            *self.train.arrays, self.y_train, rows, self._train_weights(x, rows),
            self.loss.code, self._matrix(z), _NO_MATRIX if v is None else self._matrix(v),
            self.fit_intercept, grad, hvp, cross,
        )

    def _penalty_value(self, x, coef):
        """``(1/2) sum_k r_k(x) ||coef_k||^2`` over the features."""
        return 0.5 * self.hyperparams.l2_strengths(x) @ (self._penalized(coef) ** 2).sum(0)

    def _penalty_grad(self, x, coef):
        """``r(x) * coef`` on the features, zero on the intercept."""
        out = np.zeros(self.coef_shape)
        self._penalized(out)[:] = self.hyperparams.l2_strengths(x) * self._penalized(coef)
        return out

    def _cross(self, z, x, v, rows, data_terms):
        """Assemble ``d21 G v`` from the per-row terms ``<l'(u_i), V [d_i, 1]>``."""
        zv = (self._penalized(self._matrix(z)) * self._penalized(self._matrix(v))).sum(0)
        out = self.hyperparams.l2_strengths_vjp(x, zv)
        if self.hyperparams.weights_samples:
            scale = self.hyperparams.sample_weights_derivative(x, rows) / len(rows)
            if self.sample_weight is not None:
                scale = scale * self.sample_weight[rows]
            np.add.at(out, rows, scale * data_terms)
        return out

    # -- oracles -----------------------------------------------------------

    def _full_data_terms(self, design, y, weights, Z, gradient):
        """Weighted loss over every row of ``design`` and, if ``gradient``, its gradient.

        Matrix products (BLAS) instead of the per-row kernels: faster on the
        full data, and a fit that only evaluates full-data objectives never
        compiles the kernels of :meth:`inner_oracles` for a minibatch.
        """
        U = design.margins(Z, self.fit_intercept)
        values, derivatives = self.loss.values_and_derivatives(y, U)
        if not gradient:
            return weights @ values, None
        return weights @ values, design.transpose_dot(weights[:, None] * derivatives,
                                                      self.fit_intercept)

    def inner_value(self, z, x, rows=None):
        Z = self._matrix(z)
        if rows is None:
            data, _ = self._full_data_terms(self.train, self.y_train,
                                            self._train_weights(x, self._all_train), Z, False)
        else:
            rows = self._train_rows(rows)
            data = _kernels.batch_loss(
                *self.train.arrays, self.y_train, rows, self._train_weights(x, rows),
                self.loss.code, Z, self.fit_intercept,
            )
        return data + self._penalty_value(x, Z)

    def inner_grad(self, z, x, rows=None):
        if rows is None:
            return self.inner_value_and_grad(z, x)[1]
        rows = self._train_rows(rows)
        grad = self._penalty_grad(x, self._matrix(z))
        self._train_terms(z, x, None, rows, grad, _NO_MATRIX, _NO_VECTOR)
        return grad.ravel()

    def inner_hvp(self, z, x, v, rows=None):
        hvp = self._penalty_grad(x, self._matrix(v))
        if rows is None:
            U, Q = self._full_train_margins(z, v)
            curvatures_times_q = np.einsum("nkl,nl->nk", self.loss.curvatures(self.y_train, U), Q)
            weights = self._train_weights(x, self._all_train)
            hvp += self.train.transpose_dot(weights[:, None] * curvatures_times_q,
                                            self.fit_intercept)
            return hvp.ravel()
        rows = self._train_rows(rows)
        self._train_terms(z, x, v, rows, _NO_MATRIX, hvp, _NO_VECTOR)
        return hvp.ravel()

    def _full_train_margins(self, z, v):
        """Margins of every training row at ``z`` and along ``v`` (matrix products)."""
        return (self.train.margins(self._matrix(z), self.fit_intercept),
                self.train.margins(self._matrix(v), self.fit_intercept))

    def inner_value_and_grad(self, z, x):
        """Return ``G(z, x)`` and ``d1 G(z, x)`` on the full data.

        Dense matrix products (BLAS) instead of the per-row kernels: on large
        dense data this is several times faster than :meth:`inner_value`
        and :meth:`inner_grad`, and it is what a full-batch solver such as
        L-BFGS calls.
        """
        Z = self._matrix(z)
        value, grad = self._full_data_terms(self.train, self.y_train,
                                            self._train_weights(x, self._all_train), Z, True)
        return value + self._penalty_value(x, Z), (grad + self._penalty_grad(x, Z)).ravel()

    def inner_hessian(self, z, x):
        """Return ``d11 G(z, x)`` as a dense array, in one pass over the rows.

        Block ``(k, l)`` (classes) is ``D^T diag(c_kl) D`` with ``D = [X, 1]``
        and ``c_kl`` the rows' weighted loss curvatures.
        """
        hessian = data_hessian(self.train, self.fit_intercept, self._curvatures(z, x))
        hessian[np.diag_indices(self.n_inner)] += self.inner_l2(x)
        return hessian

    def _curvatures(self, z, x):
        """The training rows' weighted loss curvatures, of shape (n_train, K, K)."""
        U = self.train.margins(self._matrix(z), self.fit_intercept)
        weights = self._train_weights(x, self._all_train)
        return self.loss.curvatures(self.y_train, U) * weights[:, None, None]

    def inner_cross(self, z, x, v, rows=None):
        full_data = rows is None
        rows = self._train_rows(rows)
        data_terms = _NO_VECTOR
        if self.hyperparams.weights_samples and full_data:
            U, Q = self._full_train_margins(z, v)
            _, derivatives = self.loss.values_and_derivatives(self.y_train, U)
            data_terms = np.einsum("nk,nk->n", derivatives, Q)
        elif self.hyperparams.weights_samples:
            data_terms = np.empty(len(rows))
            self._train_terms(z, x, v, rows, _NO_MATRIX, _NO_MATRIX, data_terms)
        return self._cross(z, x, v, rows, data_terms)

    def inner_oracles(self, z, x, v, rows=None):
        rows = self._train_rows(rows)
        grad = self._penalty_grad(x, self._matrix(z))
        hvp = self._penalty_grad(x, self._matrix(v))
        data_terms = (
            np.empty(len(rows)) if self.hyperparams.weights_samples else _NO_VECTOR
        )
        self._train_terms(z, x, v, rows, grad, hvp, data_terms)
        return grad.ravel(), hvp.ravel(), self._cross(z, x, v, rows, data_terms)

    def inner_l2(self, x):
        return self._penalty_grad(x, np.ones(self.coef_shape)).ravel()

    def sample_smoothness(self, x):
        """``l''`` bound times ``w_i s_i(x) ||[d_i, 1]||^2``."""
        norms = self.train.squared_row_norms() + self.fit_intercept
        return self._curvature_weights(x) * norms

    def _curvature_weights(self, x):
        """``l''`` bound times ``w_i s_i(x)`` for every training row."""
        return self.loss.curvature * self._train_weights(x, self._all_train) * self.n_train

    def feature_smoothness(self, x):
        """Smoothness of the data part of ``G`` in the feature coefficients.

        The intercept column is left out (see :meth:`intercept_smoothness`):
        it is the direction of largest curvature on data whose columns are
        not centred (the ones column of tf-idf rows: 1 where the features
        give 0.06), and would set the step of every coefficient.

        Returns
        -------
        full : float
            ``l''`` bound times the largest eigenvalue of
            ``X^T diag(w_i s_i(x) / n) X``: a power iteration of at most
            :data:`POWER_ITERATIONS` products, to a relative change of
            :data:`POWER_RTOL`, times :data:`POWER_SAFETY`; the mean of the
            per-sample constants (a bound) when it does not settle.
        per_sample : ndarray of shape (n_train,)
            ``l''`` bound times ``w_i s_i(x) ||x_i||^2``.
        """
        weights = self._curvature_weights(x)
        per_sample = weights * self.train.squared_row_norms()
        bound = float(per_sample.mean())
        vector = np.random.default_rng(0).standard_normal((1, self.train.shape[1]))
        vector /= np.linalg.norm(vector)
        previous = 0.0
        for _ in range(POWER_ITERATIONS):
            product = self.train.transpose_dot(
                weights[:, None] * self.train.margins(vector, False), False
            ) / self.n_train
            value = np.linalg.norm(product)
            if value == 0.0:
                return bound, per_sample
            if abs(value - previous) <= POWER_RTOL * value:
                # Known to POWER_RTOL: rounded, so that the same data stored
                # dense or sparse (other rounding errors) give the same step.
                return min(float(f"{POWER_SAFETY * value:.3g}"), bound), per_sample
            vector, previous = product / value, value
        return bound, per_sample

    def intercept_smoothness(self, x):
        """Smoothness of the data part of ``G`` in the intercept (None without one).

        Returns ``(full, per_sample)``: ``l''`` bound times the mean of
        ``w_i s_i(x)``, and times each ``w_i s_i(x)``.
        """
        if not self.fit_intercept:
            return None
        weights = self._curvature_weights(x)
        return float(weights.mean()), weights

    def _val_weights(self, rows):
        """``v_j / |rows|``: the weight of each validation row in the averages."""
        if self.val_sample_weight is None:
            return np.full(len(rows), 1.0 / len(rows))
        return self.val_sample_weight[rows] / len(rows)

    def validation_loss(self, z, rows=None):
        """Return the (weighted) mean validation loss: ``F`` without the spread penalty."""
        if rows is None:
            return self._full_data_terms(self.val, self.y_val, self._val_weights(self._all_val),
                                         self._matrix(z), False)[0]
        rows = self._val_rows(rows)
        return _kernels.batch_loss(
            *self.val.arrays, self.y_val, rows, self._val_weights(rows), self.loss.code,
            self._matrix(z), self.fit_intercept,
        )

    def spread(self, x):
        """Return ``(1/2) ||c - mean(c)||^2``, ``c = x - spread_offset``: what ``spread_penalty`` weighs."""
        centered = self._centered(x)
        return 0.5 * centered @ centered

    def _spread_offset(self):
        """The centre of the spread penalty (zeros without a penalty)."""
        if self.spread_penalty == 0:
            return np.zeros(self.n_outer)
        return self.hyperparams.feature_scale_offsets(self.train.nonzero_column_scales())

    def _centered(self, x):
        relative = x - self.spread_offset
        return relative - relative.mean()

    def outer_value(self, z, x, rows=None):
        return self.validation_loss(z, rows) + self.spread_penalty * self.spread(x)

    def outer_grad(self, z, x, rows=None):
        if rows is None:
            return self._full_data_terms(self.val, self.y_val, self._val_weights(self._all_val),
                                         self._matrix(z), True)[1].ravel()
        rows = self._val_rows(rows)
        weights = self._val_weights(rows)
        grad = np.zeros(self.coef_shape)
        _kernels.batch_derivatives(
            *self.val.arrays, self.y_val, rows, weights, self.loss.code,
            self._matrix(z), _NO_MATRIX, self.fit_intercept, grad, _NO_MATRIX,
            _NO_VECTOR,
        )
        return grad.ravel()

    def outer_grad_x(self, z, x, rows=None):
        return self.spread_penalty * self._centered(x)


def _check_spread_penalty(spread_penalty, hyperparams):
    spread_penalty = float(spread_penalty)
    if not (np.isfinite(spread_penalty) and spread_penalty >= 0):
        raise ValueError(
            f"spread_penalty must be finite and non-negative; got {spread_penalty}."
        )
    if spread_penalty > 0 and not isinstance(hyperparams, GroupedL2):
        raise ValueError(
            "spread_penalty applies to L2 strengths (GroupedL2 maps); got "
            f"{type(hyperparams).__name__}."
        )
    return spread_penalty


def _check_weights(weights, n_rows, name):
    """Return fixed per-row ``weights`` as float64, checked, or None."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_rows,):
        raise ValueError(f"{name} must have shape ({n_rows},); its shape is {w.shape}.")
    if not np.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    if (w < 0).any():
        raise ValueError(f"{name} has negative entries.")
    if not w.any():
        raise ValueError(f"{name} is zero everywhere.")
    return w


def _check_rows(rows, n_rows):
    """Return ``rows`` as int64 indices, checked to lie in ``[0, n_rows)``."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu":
        raise ValueError(f"rows must be a non-empty 1D array of integers; got {rows!r}.")
    if rows.min() < 0 or rows.max() >= n_rows:
        raise ValueError(f"rows must lie in [0, {n_rows}); got values outside.")
    return rows.astype(np.int64, copy=False)


def data_hessian(design, fit_intercept, curvatures):
    """The data part of ``d11 G``, dense: block ``(k, l)`` is ``D^T diag(c_kl) D``.

    ``D = [X, 1]`` (or ``X``) is ``design``'s matrix and ``c_kl`` the rows'
    ``curvatures[:, k, l]``.
    """
    K = curvatures.shape[1]
    n_cols = design.shape[1] + fit_intercept
    hessian = np.empty((K, n_cols, K, n_cols))
    for k in range(K):
        for l in range(k, K):
            block = design.weighted_gram(curvatures[:, k, l], fit_intercept)
            hessian[k, :, l, :] = block
            hessian[l, :, k, :] = block.T
    return hessian.reshape(K * n_cols, K * n_cols)
