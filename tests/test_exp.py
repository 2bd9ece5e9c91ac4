"""The vectorizable exponential of the kernels against ``np.exp``."""

import numpy as np
import pytest
from numba import njit

from skbilevel.problems._exp import exp
from skbilevel.problems._jit import FAST_JIT
from skbilevel.problems._kernels import sigmoid


def _exp_loop(t):
    out = np.empty_like(t)
    for i in range(t.shape[0]):
        out[i] = exp(t[i])
    return out


_exp_all = njit(_exp_loop)
# As in the kernels: reassociation and contraction allowed (``exp`` is
# inlined into its caller and compiled with the caller's options).
_exp_all_fast = njit(**{**FAST_JIT, "cache": False})(_exp_loop)


def _arguments():
    rng = np.random.default_rng(0)
    return np.concatenate([
        rng.uniform(-746.0, 710.0, 200_000),  # the whole range, overflow included
        rng.uniform(-40.0, 40.0, 200_000),  # the margins of a fit
        rng.uniform(-745.2, -708.3, 50_000),  # subnormal results
        np.linspace(-1.0, 1.0, 20_001),
        np.arange(-1100, 1100) * np.log(2.0),  # at the powers of two
        [0.0, -0.0, 5e-324, -5e-324, 1e-300, 709.782712893384, 709.7827128933841,
         -745.1332191019411, -745.1332191019412, 800.0, -800.0, 1e308, -1e308],
    ])


@pytest.mark.parametrize("compiled", [_exp_all, _exp_all_fast], ids=["default", "fast_jit"])
def test_exp_is_within_one_ulp_of_numpy(compiled):
    t = _arguments()
    with np.errstate(over="ignore"):
        expected = np.exp(t)
    got = compiled(t)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite], expected[~finite])
    assert np.all(np.abs(got - expected)[finite] <= np.spacing(expected[finite]))


@pytest.mark.parametrize("t, expected", [(np.inf, np.inf), (-np.inf, 0.0), (1000.0, np.inf),
                                         (-1000.0, 0.0), (0.0, 1.0)])
def test_exp_of_extreme_arguments(t, expected):
    assert _exp_all(np.array([t]))[0] == expected
    assert _exp_all_fast(np.array([t]))[0] == expected
    with np.errstate(over="ignore"):
        assert exp.py_func(t) == expected


def test_exp_keeps_nan():
    assert np.isnan(_exp_all(np.array([np.nan]))[0])
    assert np.isnan(_exp_all_fast(np.array([np.nan]))[0])
    assert np.isnan(exp.py_func(np.nan))


def test_exp_in_python_is_the_compiled_exp():
    t = _arguments()[::97]
    with np.errstate(over="ignore"):
        python = np.array([exp.py_func(value) for value in t])
    np.testing.assert_array_equal(python, _exp_all(t))


def test_sigmoid_moves_by_at_most_two_ulps_from_its_numpy_exp_form():
    """``sigmoid``'s own formula with ``np.exp``: exp's ulp moves ``e * p`` by two at most."""
    t = np.concatenate([np.linspace(-50, 50, 100_001), [-745.0, -700.0, 700.0, 0.0]])
    e = np.exp(-np.abs(t))
    with_numpy = np.where(t >= 0, 1.0 / (1.0 + e), e * (1.0 / (1.0 + e)))
    got = np.array([sigmoid(value) for value in t])
    assert np.all(np.abs(got - with_numpy) <= 2 * np.spacing(with_numpy))
