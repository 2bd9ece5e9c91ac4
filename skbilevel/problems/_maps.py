"""Hyperparameter maps: from the outer variable ``x`` to the inner objective.

The inner objective of a linear model is

    G(z, x) = (1/n) sum_i s_i(x) l(y_i, u_i) + (1/2) sum_k r_k(x) ||z_k||^2,

where ``z_k`` holds the coefficients of feature ``k`` (one per class). A map
gives the L2 strengths ``r(x)`` and the sample weights ``s(x)`` together with
their derivatives. Maps are specifications; a problem calls :meth:`bind` with
the data's dimensions.
"""

import copy

import numpy as np
from scipy.special import expit


class HyperparameterMap:
    """Base class of the maps.

    Attributes
    ----------
    n_hyperparams : int
        Dimension of ``x`` (set by :meth:`bind`).
    weights_samples : bool
        Whether ``s(x)`` depends on ``x``; if not, ``s(x) = 1`` and the
        cross derivative ``d21 G`` has no data term.
    """

    weights_samples = False

    def bind(self, n_features, n_train):
        """Return a copy of the map fitted to the data's dimensions."""
        bound = copy.copy(self)
        bound._bind(n_features, n_train)
        return bound

    def _bind(self, n_features, n_train):
        raise NotImplementedError

    def l2_strengths(self, x):
        """Return ``r(x)``, one strength per feature."""
        raise NotImplementedError

    def l2_strengths_vjp(self, x, w):
        """Return ``r'(x)^T w`` for a vector ``w`` over the features."""
        raise NotImplementedError

    def sample_weights(self, x, rows):
        """Return ``s(x)`` on the training rows ``rows``."""
        return np.ones(len(rows))

    def sample_weights_derivative(self, x, rows):
        """Return ``s_i'(x_i)`` on the training rows ``rows``."""
        return np.zeros(len(rows))


class GroupedL2(HyperparameterMap):
    """One L2 strength ``exp(x_g)`` shared by each group ``g`` of features.

    Feature ``k`` of group ``g_k`` has the strength ``scale_k exp(x_{g_k})``.

    Parameters
    ----------
    groups : array-like of int of shape (n_features,)
        Group of each feature, in ``0, ..., n_groups - 1``; every group must
        hold at least one feature.
    scale : array-like of shape (n_features,), default=None
        Fixed non-negative factor of each feature's strength; 0 leaves a
        feature unpenalized. None: all ones.
    """

    def __init__(self, groups, scale=None):
        self.groups = groups
        self.scale = scale

    def _feature_groups(self, n_features):
        groups = np.asarray(self.groups)
        if groups.ndim != 1 or len(groups) != n_features:
            raise ValueError(
                f"groups must have one entry per feature ({n_features}); "
                f"its shape is {groups.shape}."
            )
        if groups.dtype.kind not in "iu":
            raise ValueError(f"groups must hold integers; its dtype is {groups.dtype}.")
        return groups

    def _bind(self, n_features, n_train):
        groups = self._feature_groups(n_features)
        if groups.min() < 0:
            raise ValueError(f"groups has negative entries ({groups.min()}).")
        counts = np.bincount(groups)
        if not counts.all():
            raise ValueError(
                "groups must number the groups 0, ..., n_groups - 1 with no "
                f"empty group; group {np.flatnonzero(counts == 0)[0]} is empty."
            )
        self.groups_ = groups.astype(np.intp)
        self.n_hyperparams = len(counts)
        self.scale_ = self._check_scale(n_features)

    def _check_scale(self, n_features):
        if self.scale is None:
            return np.ones(n_features)
        scale = np.asarray(self.scale, dtype=np.float64)
        if scale.shape != (n_features,):
            raise ValueError(
                f"scale must have one entry per feature ({n_features}); "
                f"its shape is {scale.shape}."
            )
        if not np.isfinite(scale).all() or (scale < 0).any():
            raise ValueError("scale must hold finite non-negative numbers.")
        return scale

    def l2_strengths(self, x):
        return self.scale_ * np.exp(x)[self.groups_]

    def kernel_arguments(self):
        """``(kind, groups, scale)`` as the solvers' Numba kernels take them."""
        return 0, self.groups_.astype(np.int64), self.scale_

    def l2_strengths_vjp(self, x, w):
        return np.bincount(
            self.groups_, weights=self.l2_strengths(x) * w, minlength=self.n_hyperparams
        )

    def feature_scale_offsets(self, scales):
        """Log of each group's mean of ``scales_k / scale_k`` (penalized features).

        The centre of the spread penalty (``LinearBilevelProblem``), from the
        features' ``scales`` (mean squares of their values): a feature
        scaled by ``a`` has its mean square and its best strength multiplied
        by ``a^2`` (its coefficient shrinks by ``a``), so the spread of
        ``x_g - offset_g`` does not depend on the features' units. A group
        whose features are all zero gets the mean of the other offsets.
        """
        penalized = self.scale_ > 0
        ratios = np.divide(scales, self.scale_, out=np.zeros_like(scales), where=penalized)
        totals = np.bincount(self.groups_, weights=ratios, minlength=self.n_hyperparams)
        counts = np.bincount(self.groups_, weights=penalized, minlength=self.n_hyperparams)
        with np.errstate(divide="ignore", invalid="ignore"):
            offsets = np.log(totals / counts)
        finite = np.isfinite(offsets)
        offsets[~finite] = offsets[finite].mean() if finite.any() else 0.0
        return offsets


class FeatureL2(GroupedL2):
    """One L2 strength ``exp(x_k)`` per feature."""

    def __init__(self):
        super().__init__(groups=None)

    def _feature_groups(self, n_features):
        return np.arange(n_features)


class ScalarL2(GroupedL2):
    """A single L2 strength ``exp(x)`` for all features."""

    def __init__(self):
        super().__init__(groups=None)

    def _feature_groups(self, n_features):
        return np.zeros(n_features, dtype=np.intp)


class SampleWeights(HyperparameterMap):
    """One weight ``sigmoid(x_i)`` per training sample, with a fixed L2 strength.

    This is the data hyper-cleaning map: samples whose labels disagree with
    the validation data get weights near zero.

    Parameters
    ----------
    l2 : float, default=2e-3
        The fixed L2 strength ``r`` (``2 C_r`` in the papers' notation).
    """

    weights_samples = True

    def __init__(self, l2=2e-3):
        self.l2 = l2

    def _bind(self, n_features, n_train):
        if not (isinstance(self.l2, (int, float, np.number)) and np.isfinite(self.l2)
                and self.l2 > 0):
            raise ValueError(f"l2 must be a positive number; got {self.l2!r}.")
        self.n_features_ = n_features
        self.n_hyperparams = n_train

    def l2_strengths(self, x):
        return np.full(self.n_features_, float(self.l2))

    def kernel_arguments(self):
        """``(kind, groups, scale)`` as the solvers' Numba kernels take them."""
        return 1, np.zeros(0, dtype=np.int64), self.l2_strengths(None)

    def l2_strengths_vjp(self, x, w):
        return np.zeros(self.n_hyperparams)

    def sample_weights(self, x, rows):
        return expit(x[rows])

    def sample_weights_derivative(self, x, rows):
        s = expit(x[rows])
        return s * (1.0 - s)
