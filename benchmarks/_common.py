"""Shared helpers of the benchmark scripts.

The scripts in this folder run from the repository's root, e.g.
``python benchmarks/bench_oracles.py``, and import this module as
``_common`` (the script's folder is first on ``sys.path``). Importing it also
makes the in-tree ``skbilevel`` importable when the package is not installed.

Helpers:

- :func:`time_repeat`: run a function after warm-up calls, several times, and
  return the median time (plus all timings); :func:`time_interleaved` does the
  same for several functions in turn, so that their medians can be compared;
- :func:`load_dataset`: call one of the ``skbilevel.datasets`` loaders, or exit
  cleanly with a message when the data folder is missing;
- :func:`print_table` and :func:`save_results`: show rows of figures and write
  them as CSV to ``benchmarks/results/<name>.csv``;
- :func:`environment` and :func:`blas_threads`: what the timings were taken
  on; :func:`limit_blas_threads` sets the number of BLAS threads in a block;
- :func:`pyplot` and :func:`save_figure`: matplotlib without a display, and a
  figure written to ``benchmarks/results/<name>.png``.
"""

import csv
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# The installed package, or the one on PYTHONPATH; else the in-tree package.
if importlib.util.find_spec("skbilevel") is None:
    sys.path.insert(0, str(REPO_ROOT))


def child_pythonpath():
    """``PYTHONPATH`` for a child interpreter: the caller's first, then the checkout.

    A ``skbilevel`` put on ``PYTHONPATH`` (say, an export of a commit by
    ``run_all.py --snapshot``) thus wins over the in-tree package.
    """
    return os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO_ROOT)]))


def run_cold_and_warm(snippet, args=(), timeout=1800):
    """Run ``snippet`` twice in fresh interpreters sharing a new Numba cache.

    The first run compiles everything (empty cache), the second loads it.
    The snippet prints a JSON object as its last line; return both objects,
    ``(cold, warm)``.
    """
    cache_dir = tempfile.mkdtemp(prefix="skbilevel-numba-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env["PYTHONPATH"] = child_pythonpath()
    try:
        results = []
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", snippet, *args], env=env, cwd=cache_dir,
                capture_output=True, text=True, timeout=timeout,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"compile-time subprocess failed:\n{proc.stderr}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return tuple(results)


class Timing:
    """Timings of one function: all runs, and their median (in seconds).

    Attributes
    ----------
    times : list of float
        The time of each timed run, in seconds.
    median, min : float
        Their median and minimum.
    """

    def __init__(self, times):
        self.times = list(times)
        self.median = statistics.median(self.times)
        self.min = min(self.times)

    def __repr__(self):
        return (
            f"Timing(median={self.median:.6g}s, min={self.min:.6g}s, "
            f"repeat={len(self.times)})"
        )


def time_repeat(func, repeat=7, warmup=1, number=1):
    """Time ``func()`` ``repeat`` times after ``warmup`` untimed calls.

    Parameters
    ----------
    func : callable
        Called with no argument.
    repeat : int, default=7
        Number of timed runs; the median is the figure to report.
    warmup : int, default=1
        Untimed calls made first, so that Numba compilation, caches and
        allocations are excluded.
    number : int, default=1
        Calls per timed run; each run's time is divided by ``number`` (use it
        for functions too fast for the clock).

    Returns
    -------
    timing : Timing
        Time per call of each run, and their median.
    """
    if repeat < 1 or number < 1 or warmup < 0:
        raise ValueError("repeat and number must be >= 1 and warmup >= 0.")
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        times.append((time.perf_counter() - start) / number)
    return Timing(times)


#: Clocks of :func:`time_interleaved`: wall time, or the calling thread's CPU
#: time (steadier on a shared machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_interleaved(funcs, repeat=7, warmup=1, clock="wall"):
    """Time several functions in turn, round after round.

    Each round calls every function once, in order, so that all of them are
    timed under the same machine conditions (load, frequency); medians of
    functions timed this way can be compared and subtracted.

    Parameters
    ----------
    funcs : dict of str to callable
        The functions, called with no argument.
    repeat : int, default=7
        Number of rounds.
    warmup : int, default=1
        Untimed calls of each function made first (Numba compilation,
        caches).
    clock : {"wall", "cpu"}, default="wall"
        Which clock of ``CLOCKS`` times the calls.

    Returns
    -------
    timings : dict of str to Timing
        The timings of each function.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0.")
    for func in funcs.values():
        for _ in range(warmup):
            func()
    now = CLOCKS[clock]
    times = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            start = now()
            func()
            times[name].append(now() - start)
    return {name: Timing(t) for name, t in times.items()}


def load_dataset(loader, *args, **kwargs):
    """Return ``loader(*args, **kwargs)``, or exit cleanly if the data is missing.

    ``loader`` is one of the functions of :mod:`skbilevel.datasets`, which
    raise ``FileNotFoundError`` when the data folder or a file is absent. The
    script then prints why and how to point to the data, and exits with
    status 0 (a skipped benchmark is not a failure).
    """
    try:
        return loader(*args, **kwargs)
    except FileNotFoundError as exc:
        print(f"Benchmark skipped: dataset not found.\n{exc}")
        sys.exit(0)


def blas_threads():
    """Return a short description of the BLAS libraries and their threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    info = [
        f"{pool['internal_api']}:{pool['num_threads']}"
        for pool in threadpool_info() if pool["user_api"] == "blas"
    ]
    return ", ".join(info) or "none"


@contextmanager
def limit_blas_threads(n_threads):
    """Limit the BLAS threads to ``n_threads`` inside the block (None: no limit)."""
    if n_threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield


def environment():
    """Return a dict describing the machine and the library versions."""
    import numba
    import numpy
    import scipy
    import sklearn

    env = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "numba": numba.__version__,
        "cpus": os.cpu_count(),
        "blas": blas_threads(),
        "machine": platform.machine(),
    }
    if hasattr(os, "getloadavg"):
        env["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return env


def print_environment():
    """Print :func:`environment` on one line."""
    print("; ".join(f"{key} {value}" for key, value in environment().items()))


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows, columns, title=None):
    """Print a list of dicts as an aligned text table.

    Parameters
    ----------
    rows : list of dict
        One dict per line; missing keys print as empty cells. Strings are
        aligned left, numbers right.
    columns : list of str
        The keys to show, in order.
    title : str, default=None
        Printed above the table.
    """
    values = [[row.get(col, "") for col in columns] for row in rows]
    cells = [[_format(value) for value in line] for line in values]
    widths = [
        max([len(col)] + [len(line[i]) for line in cells])
        for i, col in enumerate(columns)
    ]
    if title:
        print(title)
    print("  ".join(col.ljust(w) for col, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for line, raw in zip(cells, values):
        print("  ".join(
            cell.ljust(w) if isinstance(value, str) else cell.rjust(w)
            for cell, value, w in zip(line, raw, widths)
        ).rstrip())


def save_results(rows, name, columns=None):
    """Write rows of figures to ``benchmarks/results/<name>.csv``.

    The folder is created if needed; the file is written to a temporary file
    first, then renamed, so that an interrupted run leaves no truncated CSV.

    Parameters
    ----------
    rows : list of dict
        One dict per CSV row.
    name : str
        File name, without the ``.csv`` extension.
    columns : list of str, default=None
        Column order; by default, the keys in order of first appearance.

    Returns
    -------
    path : pathlib.Path
        The written file.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.csv"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def pyplot():
    """Return ``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, name, dpi=110):
    """Write ``fig`` to ``benchmarks/results/<name>.png``, close it, return the path."""
    import matplotlib.pyplot as plt

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
