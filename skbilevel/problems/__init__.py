"""Bilevel problems: data, a loss and a hyperparameter map, with their oracles."""

from ._base import BilevelProblem
from ._design import DesignMatrix
from ._linear import LinearBilevelProblem
from ._losses import BinaryLogistic, Loss, Multinomial, Squared
from ._maps import FeatureL2, GroupedL2, HyperparameterMap, SampleWeights, ScalarL2
from ._quadratic import QuadraticBilevelProblem, make_quadratic_problem

__all__ = [
    "BilevelProblem",
    "BinaryLogistic",
    "DesignMatrix",
    "FeatureL2",
    "GroupedL2",
    "HyperparameterMap",
    "LinearBilevelProblem",
    "Loss",
    "Multinomial",
    "QuadraticBilevelProblem",
    "SampleWeights",
    "ScalarL2",
    "Squared",
    "make_quadratic_problem",
]
