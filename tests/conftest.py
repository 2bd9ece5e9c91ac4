import numpy as np
import pytest

N_TRAIN, N_VAL, N_FEATURES, N_CLASSES = 30, 20, 5, 3


def _labels(rng, loss, n):
    if loss == "logistic":
        return rng.permutation(np.arange(n) % 2) * 2.0 - 1.0
    if loss == "multinomial":
        return rng.permutation(np.arange(n) % N_CLASSES).astype(np.float64)
    return rng.standard_normal(n)


@pytest.fixture
def make_data():
    """Return a factory of small random splits ``(X_train, y_train, X_val, y_val)``.

    About 40% of the features are zero, so that CSR versions are really sparse;
    every class is present in both splits.
    """

    def make(loss, seed=0, n_train=N_TRAIN, n_val=N_VAL, n_features=N_FEATURES):
        rng = np.random.default_rng(seed)

        def design(n):
            X = rng.standard_normal((n, n_features))
            X[rng.random((n, n_features)) < 0.4] = 0.0
            return X

        X_train, X_val = design(n_train), design(n_val)
        return X_train, _labels(rng, loss, n_train), X_val, _labels(rng, loss, n_val)

    return make
