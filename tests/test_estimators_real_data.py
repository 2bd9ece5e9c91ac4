"""The estimators on the real datasets of the papers (skipped when the data is absent).

IJCNN1: per-feature BilevelLogisticRegressionCV with default parameters
(a random quarter of the 49,990 rows validates), against LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss") on the same
49,990 rows, by test log-loss. MNIST hyper-cleaning (p = 0.5): HyperCleaner
with the 5,000 clean rows passed as ``trusted`` reaches a test accuracy of
0.90 (LogisticRegression gets 0.81 on the corrupted rows, 0.899 on the
trusted rows alone). 20 Newsgroups, two topics: the double-loop solvers
tune one strength per word.
"""

import time

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import log_loss

from skbilevel import BilevelLogisticRegressionCV, HyperCleaner
from skbilevel.datasets import (
    data_available,
    load_20newsgroups_tfidf,
    load_ijcnn1,
    load_mnist_hypercleaning,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # LogisticRegressionCV attributes
]


def _skip_without(name):
    return pytest.mark.skipif(
        not data_available(name),
        reason=f"the {name} files are not in the data folder (set SKBILEVEL_DATA)",
    )


@_skip_without("ijcnn1")
def test_ijcnn1_per_feature_beats_logistic_regression_cv():
    """Defaults: the strengths are tuned on a random quarter of the 49,990 rows.

    On the dataset's own split (validation = LIBSVM's ijcnn1.val, the last
    14,990 rows) the per-feature strengths fit the validation rows much
    better than one strength does (log-loss 0.121 against 0.185) but do not
    carry over to the test rows (0.218 against LogisticRegressionCV's
    0.212): those rows are not drawn like the others. A classifier tells
    them from the first 35,000 rows with ROC AUC 0.91 and from the test rows
    with 0.83, against 0.51 for two random halves
    (``benchmarks/bench_ijcnn1_split.py``; see the report of issue 4).
    """
    data = load_ijcnn1()
    X = sp.vstack([data.X_train, data.X_val]).tocsr()
    y = np.concatenate([data.y_train, data.y_val])
    start = time.perf_counter()
    ours = BilevelLogisticRegressionCV(random_state=0).fit(X, y)
    ours_time = time.perf_counter() - start
    start = time.perf_counter()
    grid = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss").fit(X, y)
    grid_time = time.perf_counter() - start
    ours_loss = log_loss(data.y_test, ours.predict_proba(data.X_test))
    grid_loss = log_loss(data.y_test, grid.predict_proba(data.X_test))
    print(f"\nIJCNN1 test log-loss: BilevelLogisticRegressionCV {ours_loss:.5f} "
          f"({ours.solver_}, {ours_time:.1f} s), LogisticRegressionCV {grid_loss:.5f} "
          f"({grid_time:.1f} s)")
    assert ours_loss <= grid_loss


@_skip_without("mnist")
def test_mnist_hypercleaning_accuracy():
    data = load_mnist_hypercleaning(corruption=0.5, random_state=0)
    X = np.vstack([data.X_train, data.X_val])
    y = np.concatenate([data.y_train, data.y_val])
    trusted = np.r_[np.zeros(len(data.y_train), bool), np.ones(len(data.y_val), bool)]
    # solver="auto" picks SABA here; then the refit on all 25,000 rows with
    # the learned weights (L-BFGS over 7,850 coefficients): 16 s in all on a
    # loaded 2-core machine, test accuracy 0.9105 (0.9076 without the refit).
    cleaner = HyperCleaner(max_epochs=20, random_state=0)
    start = time.perf_counter()
    cleaner.fit(X, y, trusted=trusted)
    elapsed = time.perf_counter() - start
    accuracy = cleaner.score(data.X_test, data.y_test)
    weights = cleaner.sample_weight_[: len(data.y_train)]
    print(f"\nMNIST hyper-cleaning: test accuracy {accuracy:.4f} in {elapsed:.1f} s; mean "
          f"weight {weights[data.corrupted].mean():.3f} on corrupted rows, "
          f"{weights[~data.corrupted].mean():.3f} on clean ones")
    assert weights[data.corrupted].mean() < 0.5 * weights[~data.corrupted].mean()
    assert accuracy >= 0.90


@_skip_without("20newsgroups")
@pytest.mark.parametrize("solver", ["amigo", "sid", "stocbio"])
def test_double_loop_solvers_tune_one_strength_per_word(solver):
    """alt.atheism against soc.religion.christian (1,079 training posts, one
    strength per tf-idf column). With one outer step for all strengths these
    solvers left the strengths at their start and predicted at chance (test
    log-loss 0.686 for each, accuracy 0.555); with per-coordinate steps
    they reach 0.203 to 0.205 (SABA 0.196).
    """
    data = load_20newsgroups_tfidf()
    train, test = np.isin(data.y_train, [0, 15]), np.isin(data.y_test, [0, 15])
    estimator = BilevelLogisticRegressionCV(solver=solver, cv=3, random_state=0)
    estimator.fit(data.X_train[train], data.y_train[train] == 15)
    probabilities = estimator.predict_proba(data.X_test[test])
    assert log_loss(data.y_test[test] == 15, probabilities) <= 0.3
