"""Benchmark: time per SABA epoch and memory against the size of the data.

Synthetic binary logistic problems, per-feature L2 map (``FeatureL2``, one
strength per feature), intercept, split 75 % training / 25 % validation
rows (the default holdout of the estimators):

- **dense**: ``n`` rows x 100 standard Gaussian features (float64, C order),
  ``n`` = 10^4, 10^5, 10^6 (the largest: 800 MB);
- **sparse**: CSR with the same number of non-zeros, ``n`` rows x 10,000
  features and exactly 100 non-zeros per row (one in each block of 100
  columns, so indices come sorted and unique), standard Gaussian values,
  int32 indices: 10^6, 10^7 and 10^8 non-zeros (the largest: 1.2 GB).

Labels: ``sign(X w + 0.5 e)`` with ``w`` and ``e`` standard Gaussian. Every
size runs in a fresh interpreter (``--worker``), so that the peak resident
set size (RSS) is its own. In the worker, in order:

1. import, then one SABA epoch on a tiny problem of the same kind (loads or
   compiles the Numba kernels, so compilation is in neither time nor memory);
2. generate the data, in chunks of rows (generation temporaries stay small);
   ``data`` = the bytes of ``X`` and ``y`` of both splits; RSS measured;
3. build the ``LinearBilevelProblem`` (timed); RSS and peak RSS measured:
   the problem's own additions (``problem_retained``, ``problem_peak``);
4. ``get_solver("saba").solve(problem, max_epochs=E, random_state=0)`` with
   the solver's defaults; peak RSS measured.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (kernel's
high-water mark). On Linux the mark is reset (``/proc/self/clear_refs``) after
steps 2 and 3, so that each peak belongs to its step; elsewhere the peak of
step 4 may be masked by an earlier one (reported as ``hwm_reset = False``).
Memory figures:

- ``solver_peak_mb`` = peak RSS during the solve minus RSS after the
  problem was built: what the solver itself adds (its state and
  temporaries);
- ``beyond_data_mb`` = peak RSS during the solve minus RSS after the data
  was generated: everything the bilevel machinery adds beyond the data,
  problem construction included. The issue's target is judged on this one
  (at most half the data), and also reported for the solver alone.

Note that ``LinearBilevelProblem`` keeps dense C-ordered float64 input as is,
but converts the CSR indices and indptr to int64 (a copy of 8 bytes per
non-zero next to the user's 12): that copy is the problem's, counted in
``beyond_data_mb`` and not in ``solver_peak_mb``.

Time per epoch: the solver's own time (``history["time"]``, which excludes
the evaluations of the outer objective made for the history) between
consecutive recorded epochs, median over the epochs after the first. A
least-squares slope of ``log(time per epoch)`` against ``log(n)`` is
reported per kind (1 = linear), with the ratio of the times of consecutive
sizes divided by the ratio of the sizes (1 = linear, for each step). The
target "grows linearly" is judged met when the slope is at most 1.1 (faster
growth than that is not linear; slower is fine: a fixed cost per epoch).

Run from the repository's root::

    python benchmarks/bench_scaling.py            # n = 1e4, 1e5, 1e6, dense and sparse
    python benchmarks/bench_scaling.py --quick    # n = 1e4, 1e5

Outputs in ``benchmarks/results/``: ``bench_scaling.csv`` (one row per kind
and size), ``bench_scaling_fit.csv`` (slopes and target verdicts) and
``bench_scaling.png`` (time per epoch and memory against n, log-log).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

import _common  # noqa: I001  (also puts the in-tree skbilevel on sys.path)

RESULTS_NAME = "bench_scaling"
N_FEATURES_DENSE = 100
N_FEATURES_SPARSE = 10_000
NNZ_PER_ROW = 100
VAL_FRACTION = 0.25
CHUNK_ROWS = 50_000
MEMORY_TARGET = 0.5
#: Verdict on "time per epoch grows linearly in n": the fitted slope at most this.
SLOPE_TARGET = 1.1
MB = 2.0 ** 20


# -- inside a worker -------------------------------------------------------------


def _rss_mb():
    """Current resident set size, from /proc (Linux), else the peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _peak_mb()


def _peak_mb():
    """``ru_maxrss`` in MB (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024.0


def _reset_peak():
    """Reset the kernel's high-water mark of RSS (Linux); return whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _labels(scores, rng):
    return np.where(scores + 0.5 * rng.standard_normal(len(scores)) > 0, 1.0, -1.0)


def make_dense(n_rows, rng, w):
    """``n_rows`` x 100 Gaussian rows and their labels, generated in chunks."""
    X = np.empty((n_rows, N_FEATURES_DENSE))
    y = np.empty(n_rows)
    for start in range(0, n_rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n_rows)
        rng.standard_normal(out=X[start:stop])
        y[start:stop] = _labels(X[start:stop] @ w, rng)
    return X, y


def make_sparse(n_rows, rng, w):
    """CSR, ``n_rows`` x 10,000, one non-zero in each block of 100 columns."""
    width = N_FEATURES_SPARSE // NNZ_PER_ROW
    nnz = n_rows * NNZ_PER_ROW
    data = np.empty(nnz)
    indices = np.empty(nnz, dtype=np.int32)
    offsets = (np.arange(NNZ_PER_ROW, dtype=np.int32) * width)[None, :]
    for start in range(0, n_rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n_rows)
        block = slice(start * NNZ_PER_ROW, stop * NNZ_PER_ROW)
        rng.standard_normal(out=data[block])
        cols = rng.integers(0, width, size=(stop - start, NNZ_PER_ROW), dtype=np.int32)
        indices[block] = (cols + offsets).ravel()
    indptr = np.arange(0, nnz + 1, NNZ_PER_ROW, dtype=np.int32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, N_FEATURES_SPARSE))
    X.has_sorted_indices = True
    y = np.empty(n_rows)
    for start in range(0, n_rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n_rows)
        y[start:stop] = _labels(X[start:stop] @ w, rng)
    return X, y


def _nbytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def make_data(kind, n, seed):
    rng = np.random.default_rng(seed)
    n_features = N_FEATURES_DENSE if kind == "dense" else N_FEATURES_SPARSE
    w = rng.standard_normal(n_features) / np.sqrt(min(n_features, NNZ_PER_ROW))
    make = make_dense if kind == "dense" else make_sparse
    n_val = int(round(VAL_FRACTION * n))
    X_train, y_train = make(n - n_val, rng, w)
    X_val, y_val = make(n_val, rng, w)
    return X_train, y_train, X_val, y_val


def _problem(X_train, y_train, X_val, y_val):
    from skbilevel.problems import FeatureL2, LinearBilevelProblem

    return LinearBilevelProblem(X_train, y_train, X_val, y_val, loss="logistic",
                                hyperparams=FeatureL2(), fit_intercept=True)


def worker(kind, n, epochs, seed):
    """Measure one size; return a dict of figures."""
    from skbilevel.solvers import get_solver

    with warnings.catch_warnings():  # step 1: Numba kernels loaded or compiled
        warnings.simplefilter("ignore")
        get_solver("saba").solve(_problem(*make_data(kind, 2_000, seed)), max_epochs=1,
                                 random_state=seed)
    rss_base = _rss_mb()

    start = time.perf_counter()  # step 2: the data
    X_train, y_train, X_val, y_val = make_data(kind, n, seed)
    generate_time = time.perf_counter() - start
    data_mb = sum(_nbytes(a) for a in (X_train, y_train, X_val, y_val)) / MB
    rss_data = _rss_mb()
    hwm_reset = _reset_peak()

    start = time.perf_counter()  # step 3: the problem
    problem = _problem(X_train, y_train, X_val, y_val)
    problem_time = time.perf_counter() - start
    rss_problem, peak_problem = _rss_mb(), _peak_mb()
    hwm_reset = _reset_peak() and hwm_reset

    with warnings.catch_warnings(record=True) as caught:  # step 4: the solver
        warnings.simplefilter("always")
        start = time.perf_counter()
        result = get_solver("saba").solve(problem, max_epochs=epochs, random_state=seed)
        solve_wall = time.perf_counter() - start
    peak_solve = _peak_mb()

    times = np.asarray(result.history["time"], dtype=float)
    epoch = np.asarray(result.history["epoch"], dtype=float)
    per_epoch = np.diff(times) / np.maximum(np.diff(epoch), 1e-12)
    per_epoch = per_epoch[np.diff(epoch) > 0]
    nnz = X_train.nnz + X_val.nnz if sp.issparse(X_train) else X_train.size + X_val.size
    return dict(
        kind=kind, n=n, n_train=X_train.shape[0], n_val=X_val.shape[0],
        n_features=X_train.shape[1], nnz=int(nnz), epochs=float(epoch[-1]),
        epoch_time_s=float(np.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch)),
        first_epoch_time_s=float(per_epoch[0]) if len(per_epoch) else float("nan"),
        epoch_times_s=" ".join(f"{t:.4g}" for t in per_epoch),
        solve_wall_s=solve_wall, problem_time_s=problem_time, generate_time_s=generate_time,
        data_mb=data_mb, rss_base_mb=rss_base, rss_data_mb=rss_data,
        rss_problem_mb=rss_problem,
        problem_retained_mb=rss_problem - rss_data,
        problem_peak_mb=peak_problem - rss_data,
        solver_peak_mb=peak_solve - rss_problem,
        beyond_data_mb=max(peak_solve, peak_problem) - rss_data,
        solver_ratio=(peak_solve - rss_problem) / data_mb,
        beyond_data_ratio=(max(peak_solve, peak_problem) - rss_data) / data_mb,
        hwm_reset=hwm_reset, final_value=float(result.history["value"][-1]),
        warnings="; ".join(sorted({w.category.__name__ for w in caught})),
        load_avg_1min=os.getloadavg()[0],
    )


# -- in the parent -----------------------------------------------------------------


def run_worker(kind, n, epochs, seed, blas_threads, timeout=3600):
    cmd = [sys.executable, __file__, "--worker", kind, str(n), "--epochs", str(epochs),
           "--seed", str(seed), "--blas-threads", str(blas_threads)]
    env = dict(os.environ, PYTHONPATH=_common.child_pythonpath())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} n={n} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(rows):
    """Least-squares slope of log(epoch time) against log(n)."""
    if len(rows) < 2:
        return float("nan")
    n = np.log([r["n"] for r in rows])
    t = np.log([r["epoch_time_s"] for r in rows])
    return float(np.polyfit(n, t, 1)[0])


def plot(rows, fits):
    plt = _common.pyplot()
    fig, (ax_t, ax_m, ax_r) = plt.subplots(1, 3, figsize=(16, 5.2))
    colors = {"dense": "tab:blue", "sparse": "tab:orange"}
    for kind in ("dense", "sparse"):
        sub = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["n"])
        if not sub:
            continue
        color = colors[kind]
        n = np.array([r["n"] for r in sub], dtype=float)
        t = np.array([r["epoch_time_s"] for r in sub])
        ax_t.loglog(n, t, "o-", color=color, label=f"{kind} (slope {fits[kind]['slope']:.3f})")
        ax_t.loglog(n, t[0] * n / n[0], ":", color=color, alpha=0.6)
        curves = {
            "data": ("s-", [r["data_mb"] for r in sub]),
            "beyond data (problem + solver)": ("o--", [r["beyond_data_mb"] for r in sub]),
            "solver alone": ("^:", [r["solver_peak_mb"] for r in sub]),
        }
        for label, (style, values) in curves.items():
            values = np.array(values)
            keep = values > 0  # the allocator's noise can make tiny sizes negative
            ax_m.loglog(n[keep], values[keep], style, color=color, label=f"{kind}: {label}")
        ax_r.semilogx(n, [r["beyond_data_ratio"] for r in sub], "o--", color=color,
                      label=f"{kind}: problem + solver")
        ax_r.semilogx(n, [r["solver_ratio"] for r in sub], "^:", color=color,
                      label=f"{kind}: solver alone")
    ax_r.axhline(MEMORY_TARGET, color="black", lw=1, label="target (0.5)")
    ax_t.set(xlabel="rows n (75 % train)", ylabel="time per SABA epoch (s)",
             title="Time per epoch (dotted: linear in n)")
    ax_m.set(xlabel="rows n", ylabel="MB (resident set size, from the OS)",
             title="Data, and peak memory beyond it")
    ax_r.set(xlabel="rows n", ylabel="peak memory beyond the data / data size",
             title="Memory beyond the data, relative")
    for ax in (ax_t, ax_m, ax_r):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
                  frameon=False)
    fig.tight_layout()
    return _common.save_figure(fig, RESULTS_NAME)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e4 and 1e5 only")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated n (default 10000,100000,1000000)")
    parser.add_argument("--kinds", default="dense,sparse")
    parser.add_argument("--epochs", type=int, default=5,
                        help="SABA epochs per size (default 5; the first is not timed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "N"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        with _common.limit_blas_threads(args.blas_threads):
            figures = worker(args.worker[0], int(args.worker[1]), args.epochs, args.seed)
        print(json.dumps(figures))
        return
    sizes = ([int(float(s)) for s in args.sizes.split(",")] if args.sizes
             else [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    kinds = [k for k in args.kinds.split(",") if k]
    with _common.limit_blas_threads(args.blas_threads):  # as in the workers
        _common.print_environment()
    rows = []
    for kind in kinds:
        for n in sizes:
            row = run_worker(kind, n, args.epochs, args.seed, args.blas_threads)
            rows.append(row)
            print(f"{kind:6s} n={n:>9,d}: {row['epoch_time_s'] * 1e3:9.1f} ms/epoch, data "
                  f"{row['data_mb']:8.1f} MB, problem +{row['problem_retained_mb']:.1f} MB "
                  f"(peak +{row['problem_peak_mb']:.1f}), solver peak "
                  f"+{row['solver_peak_mb']:.1f} MB, beyond data "
                  f"{row['beyond_data_ratio']:.3f} x data", flush=True)
    fits = {}
    for kind in kinds:
        sub = [r for r in rows if r["kind"] == kind]
        worst = max(r["beyond_data_ratio"] for r in sub)
        worst_solver = max(r["solver_ratio"] for r in sub)
        sub.sort(key=lambda r: r["n"])
        steps = [(b["epoch_time_s"] / a["epoch_time_s"]) / (b["n"] / a["n"])
                 for a, b in zip(sub, sub[1:])]
        fits[kind] = dict(
            kind=kind, sizes=" ".join(str(r["n"]) for r in sub), slope=slope(sub),
            time_ratio_per_size_ratio=" ".join(f"{x:.2f}" for x in steps),
            time_target_met=_yes(slope(sub) <= SLOPE_TARGET),
            max_beyond_data_ratio=worst, max_solver_ratio=worst_solver,
            memory_target_met=_yes(worst <= MEMORY_TARGET),
            memory_target_met_solver_alone=_yes(worst_solver <= MEMORY_TARGET),
        )
    columns = ["kind", "n", "n_features", "nnz", "epoch_time_s", "first_epoch_time_s",
               "data_mb", "problem_retained_mb", "problem_peak_mb", "solver_peak_mb",
               "beyond_data_mb", "solver_ratio", "beyond_data_ratio"]
    _common.print_table(rows, columns, title="\nScaling")
    _common.print_table(list(fits.values()), list(next(iter(fits.values()))),
                        title="\nSlope of log(epoch time) vs log(n), and memory targets")
    print(f"\nResults written to {_common.save_results(rows, RESULTS_NAME)}")
    _common.save_results(list(fits.values()), RESULTS_NAME + "_fit")
    print(f"Figure written to {plot(rows, fits)}")


def _yes(flag):
    return "yes" if flag else "no"


if __name__ == "__main__":
    main()
