"""scikit-learn estimators whose hyperparameters are tuned by bilevel optimization."""

from ._cleaner import HyperCleaner
from ._folds import FoldAverageProblem
from ._logistic import BilevelLogisticRegressionCV
from ._ridge import BilevelRidgeCV

__all__ = [
    "BilevelLogisticRegressionCV",
    "BilevelRidgeCV",
    "FoldAverageProblem",
    "HyperCleaner",
]
