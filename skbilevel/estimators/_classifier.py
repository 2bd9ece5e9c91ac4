"""Prediction methods of the linear classifiers (binary logistic or multinomial)."""

import numpy as np
from scipy.special import expit, log_expit, log_softmax
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from ..problems import Multinomial


class LinearClassifierMixin(ClassifierMixin):
    """Targets, ``decision_function`` and probabilities of a logistic model.

    Two classes use the binary logistic loss on labels ``-1`` (``classes_[0]``)
    and ``+1`` (``classes_[1]``) and a ``coef_`` of one row; more use the
    multinomial loss with one row per class.
    """

    def _encode_targets(self, y):
        check_classification_targets(y)
        kind = type_of_target(y, input_name="y")
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"{type(self).__name__} supports binary and multiclass "
                             f"targets only; got {kind} targets.")
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]!r}."
            )
        encoded = encoder.transform(y).astype(np.float64)
        if len(self.classes_) == 2:
            return 2.0 * encoded - 1.0
        return encoded

    def _loss(self):
        if len(self.classes_) == 2:
            return "logistic"
        return Multinomial(n_classes=len(self.classes_))

    def _check_splits(self, y, splits):
        """Every training split must hold every class (the intercepts diverge otherwise)."""
        n_classes = len(self.classes_)
        for train, _ in splits:
            present = np.unique(y[train]).size
            if present < n_classes:
                raise ValueError(
                    f"A training split holds {present} of the {n_classes} classes; every "
                    "class needs samples in every training split. Use fewer folds or a "
                    "smaller validation_fraction."
                )

    def decision_function(self, X):
        """Signed distance to the boundary (binary) or the class margins (multiclass).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        scores = self._decision(X)
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Predict the class of every sample of ``X``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_log_proba(self, X):
        """Log-probability of every class, columns in the order of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([log_expit(-scores), log_expit(scores)])
        return log_softmax(scores, axis=1)

    def predict_proba(self, X):
        """Probability of every class, columns in the order of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        return np.exp(log_softmax(scores, axis=1))
