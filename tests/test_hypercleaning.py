"""Data hyper-cleaning on ``load_digits``: every solver finds the corrupted labels.

Half of the training labels are replaced by a different class drawn at
random; the validation labels are clean. The hyperparameters are one weight
``sigmoid(x_i)`` per training sample (:class:`~skbilevel.problems.SampleWeights`)
of a multinomial logistic regression. With default settings, every solver
must learn weights that rank the corrupted samples below the clean ones:
the ROC AUC of ``-weight`` as a detector of corruption exceeds 0.9.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from skbilevel.problems import LinearBilevelProblem, SampleWeights
from skbilevel.solvers import SOLVERS, get_solver

N_TRAIN, N_VAL, CORRUPTION = 1000, 400, 0.5

#: Smallest epoch budgets among 2, 5, 10, 20, 50, 100 for which the AUC
#: exceeds 0.9 on every one of 9 runs (data seeds 0-2 of
#: :func:`make_hypercleaning` x solver seeds 0-2). In the comments: the
#: lowest AUC of the 9 runs at that budget, and at the budget below it.
EPOCHS = {
    "soba": 5,      # 0.964; 2 epochs: 0.871
    "saba": 10,     # 0.959; 5: 0.899
    "amigo": 10,    # 0.970; 5: 0.843
    "sid": 10,      # 0.944; 5: 0.880
    "stocbio": 20,  # 0.958; 10: 0.913 (all 9 pass, too close to call reliable)
    "aid": 50,      # 0.981; 20: 0.5 (first outer step after 32 epochs: 10 + 21 + 1)
    "itd": 100,     # 0.952; 50: 0.910 (all 9 pass, too close to call reliable)
}


def make_hypercleaning(seed=0):
    """The problem and the mask of the corrupted training samples.

    Pixels are scaled to [0, 1]; ``N_TRAIN`` training and ``N_VAL``
    validation images are drawn without overlap, and ``CORRUPTION`` of the
    training labels are replaced by a class drawn uniformly among the nine
    others.
    """
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    train, val = perm[:N_TRAIN], perm[N_TRAIN:N_TRAIN + N_VAL]
    y_train = y[train].copy()
    corrupted = np.zeros(N_TRAIN, dtype=bool)
    corrupted[rng.choice(N_TRAIN, int(CORRUPTION * N_TRAIN), replace=False)] = True
    y_train[corrupted] = (y_train[corrupted] + rng.integers(1, 10, corrupted.sum())) % 10
    problem = LinearBilevelProblem(X[train], y_train, X[val], y[val], loss="multinomial",
                                   hyperparams=SampleWeights())
    return problem, corrupted


@pytest.fixture(scope="module")
def hypercleaning():
    return make_hypercleaning()


def test_epoch_budgets_cover_every_solver():
    assert set(EPOCHS) == set(SOLVERS)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", SOLVERS)
def test_weights_detect_corrupted_labels(name, seed, hypercleaning):
    problem, corrupted = hypercleaning
    result = get_solver(name).solve(problem, max_epochs=EPOCHS[name], random_state=seed)
    weights = 1.0 / (1.0 + np.exp(-result.x))
    assert roc_auc_score(corrupted, -weights) > 0.9
