"""Per-sample losses of linear models: target checks, constants, curvatures."""

import numpy as np
from scipy.special import expit, log_softmax, softmax

from . import _kernels


class Loss:
    """A per-sample loss ``l(y, u)`` of a linear model with margins ``u``.

    Attributes
    ----------
    code : int
        Identifier of the loss in the Numba kernels.
    curvature : float
        Upper bound of the second derivative of the loss in ``u``.
    """

    code = None
    curvature = None

    def n_outputs(self, *targets):
        """Number of margins per sample (1, or the number of classes)."""
        return 1

    def check_targets(self, y, name):
        """Return ``y`` as float64, or raise ``ValueError`` naming ``name``."""
        return np.asarray(y, dtype=np.float64)

    def values_and_derivatives(self, y, U):
        """Return every row's loss and its derivative in ``u`` (NumPy, full data).

        Parameters
        ----------
        y : ndarray of shape (n,)
        U : ndarray of shape (n, K)
            Margins.

        Returns
        -------
        values : ndarray of shape (n,)
        derivatives : ndarray of shape (n, K)
        """
        raise NotImplementedError

    def curvatures(self, y, U):
        """Return the second derivatives in ``u`` of every row's loss.

        Parameters
        ----------
        y : ndarray of shape (n,)
        U : ndarray of shape (n, K)
            Margins.

        Returns
        -------
        ndarray of shape (n, K, K)
        """
        raise NotImplementedError


class BinaryLogistic(Loss):
    """Binary logistic loss ``log(1 + exp(-y u))`` with labels in ``{-1, +1}``."""

    code = _kernels.LOGISTIC
    curvature = 0.25

    def check_targets(self, y, name):
        y = super().check_targets(y, name)
        bad = ~np.isin(y, (-1.0, 1.0))
        if bad.any():
            raise ValueError(
                f"The binary logistic loss needs labels in {{-1, +1}}; "
                f"{name} holds {np.unique(y[bad])[:5].tolist()}."
            )
        return y

    def values_and_derivatives(self, y, U):
        margins = y * U[:, 0]
        return np.logaddexp(0.0, -margins), (-y * expit(-margins))[:, None]

    def curvatures(self, y, U):
        return (expit(U) * expit(-U))[:, :, None]


class Squared(Loss):
    """Squared loss ``(u - y)^2 / 2`` for regression."""

    code = _kernels.SQUARED
    curvature = 1.0

    def values_and_derivatives(self, y, U):
        residuals = U[:, 0] - y
        return 0.5 * residuals ** 2, residuals[:, None]

    def curvatures(self, y, U):
        return np.ones((U.shape[0], 1, 1))


class Multinomial(Loss):
    """Multinomial logistic loss with class indices ``0, ..., K - 1``.

    Parameters
    ----------
    n_classes : int or None
        Number of classes ``K``; by default one more than the largest label.
    """

    code = _kernels.MULTINOMIAL
    curvature = 0.5

    def __init__(self, n_classes=None):
        self.n_classes = n_classes

    def n_outputs(self, *targets):
        n_classes = self.n_classes
        if n_classes is None:
            n_classes = int(max(np.max(y) for y in targets)) + 1
        if n_classes < 2:
            raise ValueError(
                f"The multinomial loss needs at least 2 classes; got {n_classes}."
            )
        return n_classes

    def check_targets(self, y, name):
        y = super().check_targets(y, name)
        bad = (y < 0) | (y != np.round(y))
        if self.n_classes is not None:
            bad |= y >= self.n_classes
        if bad.any():
            raise ValueError(
                "The multinomial loss needs class indices 0, ..., K - 1; "
                f"{name} holds {np.unique(y[bad])[:5].tolist()}."
            )
        return y

    def values_and_derivatives(self, y, U):
        labels = y.astype(np.intp)
        log_p = log_softmax(U, axis=1)
        derivatives = np.exp(log_p)
        derivatives[np.arange(len(labels)), labels] -= 1.0
        return -log_p[np.arange(len(labels)), labels], derivatives

    def curvatures(self, y, U):
        P = softmax(U, axis=1)
        return P[:, :, None] * np.eye(P.shape[1]) - P[:, :, None] * P[:, None, :]


LOSSES = {"logistic": BinaryLogistic, "squared": Squared, "multinomial": Multinomial}


def check_loss(loss):
    """Return a :class:`Loss` from an instance or one of the names of ``LOSSES``."""
    if isinstance(loss, Loss):
        return loss
    if loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(f"loss must be one of {sorted(LOSSES)} or a Loss; got {loss!r}.")
