"""Gradient-based hyperparameter tuning of scikit-learn models.

skbilevel tunes regularization strengths and sample weights by bilevel
optimization: the model is fitted on a training split, and the
hyperparameters follow the gradient of a validation loss obtained by
implicit differentiation.
"""

from ._numba_cache import stamp_with_package_sources

stamp_with_package_sources()  # before any kernel of the package is defined

from ._plot import ConvergenceDisplay, SampleWeightsDisplay, StrengthsDisplay
from .estimators import BilevelLogisticRegressionCV, BilevelRidgeCV, HyperCleaner

__version__ = "0.1.0.dev0"

__all__ = [
    "BilevelLogisticRegressionCV",
    "BilevelRidgeCV",
    "ConvergenceDisplay",
    "HyperCleaner",
    "SampleWeightsDisplay",
    "StrengthsDisplay",
    "__version__",
]
