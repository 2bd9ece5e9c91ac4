"""Numba's on-disk cache of the kernels, across processes."""

import os
import shutil
import subprocess
import sys

import skbilevel
from skbilevel._numba_cache import package_stamp
from skbilevel.solvers._linear_kernels import _CHUNK_KERNELS

_FIT_SABA = """
import numpy as np
from skbilevel.problems import FeatureL2, LinearBilevelProblem
from skbilevel.solvers import SABA
rng = np.random.default_rng(0)
X = rng.standard_normal((60, 4))
y = np.where(X[:, 0] > 0, 1.0, -1.0)
problem = LinearBilevelProblem(X[:40], y[:40], X[40:], y[40:], loss="logistic",
                               hyperparams=FeatureL2())
print(repr(SABA().solve(problem, max_epochs=2, random_state=0).z.tolist()))
"""

_CALL_ROW_OPERATIONS = """
import numpy as np
from skbilevel.problems._kernels import dense_batch_margins, dense_batch_scatter
X, rows = np.ones((5, 3)), np.arange(5)
W, U, G = np.ones((1, 4)), np.zeros((1, 5)), np.zeros((1, 4))
dense_batch_margins(X, rows, 0, 5, True, W, U, W, U, True, 1)
dense_batch_scatter(X, rows, 0, 5, True, U, G, U, G, False, 1)
print(U[0, 0], G[0, 0])
"""


def _run(code, env, cwd=None):
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_cached_kernels_leave_the_row_operations_callable(tmp_path):
    """A later process calls the row operations that a SABA fit inlined, from Python.

    ``_batches`` overloads them with the same Python functions that
    ``dense_batch_margins`` and ``dense_batch_scatter`` compile on their own;
    when the overloads were cached too, both shared the cache files, and a
    process that loaded the overloads' entry crashed on its first call.
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    _run(_FIT_SABA, env)
    assert _run(_CALL_ROW_OPERATIONS, env).split() == ["4.0", "20.0"]


def test_kernels_are_stamped_with_every_source_of_the_package():
    locator = _CHUNK_KERNELS[True, False, False]._cache._impl.locator
    assert type(locator).__name__.startswith("Package")
    assert locator.get_source_stamp() == package_stamp()


def test_a_helper_changed_in_another_file_recompiles_the_kernel(tmp_path):
    """A copy of the package, fitted, then its ``sigmoid`` (``problems/_kernels.py``) changed.

    The SABA kernel (``solvers/_linear_kernels.py``) inlines ``sigmoid``;
    stamped with its own file only, its cache entry would still be loaded
    after the change, and the fit would not change.
    """
    shutil.copytree(os.path.dirname(skbilevel.__file__), tmp_path / "skbilevel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(tmp_path)  # the copy's __pycache__ holds the cache
    before = _run(_FIT_SABA, env, cwd=tmp_path)
    assert _run(_FIT_SABA, env, cwd=tmp_path) == before  # loaded from the cache
    helpers = tmp_path / "skbilevel" / "problems" / "_kernels.py"
    source = helpers.read_text()
    assert source.count("e = exp(-abs(t))") == 1
    helpers.write_text(source.replace("e = exp(-abs(t))", "e = exp(-abs(2.0 * t))"))
    assert _run(_FIT_SABA, env, cwd=tmp_path) != before
