"""
========================================
Hyper-cleaning: learning which rows lie
========================================

When some training labels are wrong and a smaller set of rows is known to be
right (the *trusted* rows), :class:`~skbilevel.HyperCleaner` learns one weight
in (0, 1) per training row, so that the model fitted on the weighted rows
predicts the trusted rows well. Rows with wrong labels get weights near
zero. This is the data hyper-cleaning task of the SOBA/SABA and stocBiO
papers (see :ref:`hypercleaning`).

This example corrupts half of the labels of scikit-learn's digits, cleans
them, and draws the learned weights with
:class:`~skbilevel.SampleWeightsDisplay`; then it runs a small version of the
papers' MNIST task when the MNIST file is in the data folder.
"""

# %%
# Digits with corrupted labels
# ----------------------------
#
# 1,257 rows to fit on, a random fifth of them trusted (their labels are
# right). Every other label is replaced, with probability 0.5, by a class
# drawn at random (possibly the same one): about 45% of them end up wrong.
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from skbilevel import ConvergenceDisplay, HyperCleaner, SampleWeightsDisplay
from skbilevel.datasets import data_available, load_mnist_hypercleaning, make_corrupted_labels

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_fit, X_test, y_fit, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
rng = np.random.RandomState(0)
trusted = rng.rand(len(y_fit)) < 0.2
y_noisy, corrupted = make_corrupted_labels(y_fit, 0.5, n_classes=10, random_state=rng)
y_noisy[trusted] = y_fit[trusted]
corrupted &= ~trusted
print(f"{trusted.sum()} trusted rows, {(~trusted).sum()} others, "
      f"{corrupted.sum()} of them with a wrong label")

# %%
# The trusted rows are passed to ``fit`` as a boolean mask; they are the
# validation rows of the bilevel problem, and they are part of the final fit
# with weight 1. Two baselines with the same L2 strength: a logistic
# regression on all rows as they are, and one on the trusted rows only.
cleaner = HyperCleaner(random_state=0)
start = time.perf_counter()
with warnings.catch_warnings():
    # The default budget of 30 epochs ends before the solver's tolerance.
    warnings.simplefilter("ignore", ConvergenceWarning)
    cleaner.fit(X_fit, y_noisy, trusted=trusted)
print(f"HyperCleaner ({cleaner.solver_}, {time.perf_counter() - start:.1f} s)")

# ``l2`` is a strength per mean over the rows; scikit-learn's C multiplies a sum.
C = 1.0 / (len(y_fit) * cleaner.l2)
everything = LogisticRegression(C=C, max_iter=1000).fit(X_fit, y_noisy)
trusted_only = LogisticRegression(C=C, max_iter=1000).fit(X_fit[trusted], y_fit[trusted])
print(f"test accuracy, all rows as they are:  {everything.score(X_test, y_test):.3f}")
print(f"test accuracy, trusted rows only:     {trusted_only.score(X_test, y_test):.3f}")
print(f"test accuracy, HyperCleaner:          {cleaner.score(X_test, y_test):.3f}")

# %%
# The learned weights
# -------------------
#
# ``sample_weight_`` holds the weight of every row in the final fit. Here we
# know which labels are wrong, so :class:`~skbilevel.SampleWeightsDisplay`
# can split the histogram of the learned weights (trusted rows left out) by
# that. The rows with a wrong label collect near 0, the others near 1; the
# few in between (the counts are on a log scale, ``log=True``, to show
# them) are rows whose wrong label is plausible, or whose right label the
# model finds hard.
weights = cleaner.sample_weight_[~trusted]
wrong = corrupted[~trusted]
print(f"mean weight: {weights[wrong].mean():.2f} on wrong labels, "
      f"{weights[~wrong].mean():.2f} on right ones")
display = SampleWeightsDisplay.from_estimator(cleaner, corrupted=corrupted, log=True)
display.ax_.set_title("Digits: learned weights of the 1,000 untrusted rows")

# %%
# The weights are also a detector of wrong labels, with no threshold to
# choose beforehand: rows sorted by weight, the wrong ones come first.
print(f"ROC AUC of (1 - weight) as a detector of wrong labels: "
      f"{roc_auc_score(wrong, 1 - weights):.3f}")

# %%
# There are 1,000 hyperparameters here, one per row: far beyond any grid.
# The validation log-loss along the run:
ConvergenceDisplay.from_estimator(cleaner, x="epoch")

# %%
# MNIST, small
# ------------
#
# The papers' task uses 20,000 MNIST training images with labels corrupted
# with probability 0.5, 5,000 clean validation images and 10,000 test images
# (see the benchmark figures in :ref:`solvers`). Here a quarter of that, 10
# epochs of SABA, so that it runs in seconds.
# :func:`~skbilevel.datasets.load_mnist_hypercleaning` reads ``mnist.npz``
# from the data folder (``SKBILEVEL_DATA``); without it this part only says
# so.
if data_available("mnist"):
    mnist = load_mnist_hypercleaning(n_train=4000, n_val=1000, n_test=2000, random_state=0)
    X = np.vstack([mnist.X_train, mnist.X_val])
    y = np.concatenate([mnist.y_train, mnist.y_val])
    trusted = np.r_[np.zeros(len(mnist.y_train), bool), np.ones(len(mnist.y_val), bool)]
    cleaner = HyperCleaner(max_epochs=10, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cleaner.fit(X, y, trusted=trusted)
    print(f"HyperCleaner ({cleaner.solver_}, {time.perf_counter() - start:.1f} s)")
    C = 1.0 / (len(y) * cleaner.l2)
    baselines = {
        "all rows as they are": (mnist.X_train, mnist.y_train),
        "trusted rows only": (mnist.X_val, mnist.y_val),
    }
    for name, (X_base, y_base) in baselines.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            base = LogisticRegression(C=C, max_iter=300).fit(X_base, y_base)
        print(f"test accuracy, {name + ':':<22s}{base.score(mnist.X_test, mnist.y_test):.3f}")
    print(f"test accuracy, {'HyperCleaner:':<22s}{cleaner.score(mnist.X_test, mnist.y_test):.3f}")
    display = SampleWeightsDisplay.from_estimator(
        cleaner, corrupted=np.r_[mnist.corrupted, trusted[trusted]], log=True
    )
    display.ax_.set_title("MNIST: learned weights of the 4,000 untrusted rows")
else:
    print("mnist.npz is not in the data folder: this part is skipped. Set "
          "SKBILEVEL_DATA to the folder holding it to run it.")

# %%
# With wrong labels on nearly half the training rows, the rows as they are
# make a poor model; the trusted rows alone make a better one, and the
# cleaned rows add to them what the trusted rows cannot see alone. The
# figures of the full-size task, for every solver, are in
# ``benchmarks/results/bench_solvers.csv``.
