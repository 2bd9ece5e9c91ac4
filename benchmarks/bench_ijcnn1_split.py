"""Benchmark: is IJCNN1's own validation split drawn like its test rows?

Issue 4 asks per-feature ``BilevelLogisticRegressionCV`` to match
``LogisticRegressionCV`` in test log-loss when tuned on IJCNN1's own split
(train = the first 35,000 rows of ``ijcnn1.trn``, validation = the last
14,990). This script measures why that split behaves differently from a
random one. On the 49,990 rows of ``ijcnn1.trn`` and the ``.tst`` file:

1. **Domain classifiers.** A gradient-boosted classifier
   (``HistGradientBoostingClassifier``, 3-fold cross-validated ROC AUC) tells
   apart two sets of rows from their 22 features: the first 35,000 from the
   last 14,990, the last 14,990 from the test rows, the first 35,000 from
   the test rows, and, as a control, two halves of a random permutation of
   the 49,990 rows (AUC 0.5 when the sets are drawn alike).
2. **The same estimator on two splits.** Per-feature and scalar
   ``BilevelLogisticRegressionCV`` (defaults otherwise), tuned on the own
   split and on a random holdout of the same size (the estimator's default
   ``cv=None``), with their validation and test log-loss, against
   ``LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss")`` on the
   49,990 rows.

Run from the repository's root::

    python benchmarks/bench_ijcnn1_split.py

Figures are saved to ``benchmarks/results/bench_ijcnn1_split.csv``. Every fit
runs with one BLAS thread.
"""

import argparse
import time
import warnings

import numpy as np

import _common  # noqa: I001  (also puts the in-tree skbilevel on sys.path)
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import cross_val_score

from skbilevel import BilevelLogisticRegressionCV
from skbilevel.datasets import load_ijcnn1

RESULTS_NAME = "bench_ijcnn1_split"
N_TRAIN = 35_000


def domain_auc(A, B, seed):
    """Cross-validated ROC AUC of a classifier telling the rows of ``A`` from those of ``B``."""
    X = np.vstack([A, B])
    origin = np.r_[np.zeros(len(A)), np.ones(len(B))]
    classifier = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    return float(cross_val_score(classifier, X, origin, cv=3, scoring="roc_auc").mean())


def domain_rows(X, X_test, seed):
    """One row per pair of row sets, with its domain-classifier AUC."""
    perm = np.random.default_rng(seed).permutation(len(X))
    half = len(X) // 2
    pairs = [
        ("first 35,000 vs last 14,990", X[:N_TRAIN], X[N_TRAIN:]),
        ("last 14,990 vs test", X[N_TRAIN:], X_test),
        ("first 35,000 vs test", X[:N_TRAIN], X_test),
        ("random half vs other half (control)", X[perm[:half]], X[perm[half:]]),
    ]
    rows = []
    for name, A, B in pairs:
        auc = domain_auc(A, B, seed)
        print(f"  domain AUC, {name}: {auc:.3f}", flush=True)
        rows.append({"part": "domain", "what": name, "auc": auc})
    return rows


def fit_rows(X, y, X_test, y_test, seed):
    """Validation and test log-loss of the bilevel estimators on both splits, and of LRCV."""
    own = [(np.arange(N_TRAIN), np.arange(N_TRAIN, len(y)))]
    rows = []
    start = time.perf_counter()
    grid = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss").fit(X, y)
    rows.append({
        "part": "fit", "what": "LogisticRegressionCV(Cs=10, cv=5)", "split": "5 folds",
        "fit_time_s": time.perf_counter() - start,
        "test_log_loss": log_loss(y_test, grid.predict_proba(X_test)),
    })
    for penalty in ("per_feature", "scalar"):
        for split_name, cv in (("own (last 14,990 validate)", own),
                               ("random holdout (default)", None)):
            start = time.perf_counter()
            est = BilevelLogisticRegressionCV(penalty=penalty, cv=cv, random_state=seed)
            est.fit(X, y)
            rows.append({
                "part": "fit", "what": f"BilevelLogisticRegressionCV {penalty}",
                "split": split_name, "fit_time_s": time.perf_counter() - start,
                "solver": est.solver_, "val_log_loss": -est.best_score_,
                "test_log_loss": log_loss(y_test, est.predict_proba(X_test)),
                "strengths_at_bounds": int(np.sum(np.abs(np.log(np.atleast_1d(est.alpha_)))
                                                  >= 14.99)),
            })
    for row in rows:
        print(f"  {row['what']:42s} {row['split']:28s} validation "
              f"{row.get('val_log_loss', float('nan')):.4f}  test {row['test_log_loss']:.4f}",
              flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder of the datasets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _common.print_environment()
    data = _common.load_dataset(load_ijcnn1, data_home=args.data_home, dense=True)
    X = np.vstack([data.X_train, data.X_val])
    y = np.concatenate([data.y_train, data.y_val])
    with _common.limit_blas_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV attributes
        print(f"BLAS threads during the fits: {_common.blas_threads()}")
        print("Can a classifier tell the row sets apart (ROC AUC; 0.5: drawn alike)?")
        rows = domain_rows(X, data.X_test, args.seed)
        print("Validation and test log-loss on the two splits:")
        rows += fit_rows(X, y, data.X_test, data.y_test, args.seed)
    _common.save_results(rows, RESULTS_NAME)
    print(f"Saved benchmarks/results/{RESULTS_NAME}.csv")


if __name__ == "__main__":
    main()
