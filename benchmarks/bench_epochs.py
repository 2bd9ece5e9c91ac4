"""Benchmark: one SOBA and one SABA epoch on IJCNN1 vs one NumPy gradient.

On IJCNN1 (dense, 35,000 training rows x 22 features, binary logistic,
per-feature L2 map ``FeatureL2``, intercept; validation = the last 14,990
rows), the script times, interleaved round after round so that the figures
can be compared:

- one epoch of the Numba kernels of SOBA and SABA, called through
  ``skbilevel.solvers._linear_kernels.single_loop_chunk``: 547 iterations of
  a training batch of 64 and a validation batch, with the batches drawn
  beforehand, for SOBA (``saga=False``; validation batch 64) and SABA
  (``saga=True``, the per-sample SAGA memories; its default validation batch
  of 27 rows, ``64 n_val / n_train``, and also 64 as SOBA's);
- the same epochs through the solvers' own ``_kernel_epoch`` (batches drawn
  from the NumPy generator in Python, then one kernel call);
- one full-data gradient of the inner objective written directly with NumPy
  matrix products (``bench_oracles.numpy_gradient``), the yardstick of the
  issue: a SABA epoch must cost at most 3 of them.

It also measures the Numba compile time of a first fit, in fresh
subprocesses: ``SABA().solve``, and apart ``SOBA().solve``, for 2 epochs on a
small dense logistic problem, cold (empty ``NUMBA_CACHE_DIR``) and warm (the
cache the cold run wrote), three times each; the compile time is the first
fit's time minus the time of the same fit repeated in the same process.

Run from the repository's root::

    python benchmarks/bench_epochs.py              # timings and compile time
    python benchmarks/bench_epochs.py --clock wall

Figures are saved to ``benchmarks/results/bench_epochs.csv``. By default the
clock is the CPU time of the thread (``--clock cpu``): on a machine shared
with other jobs, wall time also counts the time spent waiting for a core.
"""

import argparse

import numpy as np

import _common  # noqa: I001  (also puts the in-tree skbilevel on sys.path)
from bench_oracles import numpy_gradient
from skbilevel.datasets import load_ijcnn1
from skbilevel.problems import FeatureL2, LinearBilevelProblem
from skbilevel.solvers import SABA, SOBA
from skbilevel.solvers._linear_kernels import single_loop_chunk
from skbilevel.solvers._sampling import BatchStream

BATCH_SIZE = 64
TARGET_RATIO = {"saba": 3.0}
RESULTS_NAME = "bench_epochs"


class EpochCase:
    """IJCNN1, a point ``(z, v, x)``, the batches of one epoch, the memories."""

    def __init__(self, data, seed):
        self.problem = p = LinearBilevelProblem(
            data.X_train, data.y_train, data.X_val, data.y_val, loss="logistic",
            hyperparams=FeatureL2(), fit_intercept=True,
        )
        rng = np.random.default_rng(seed)
        self.Z0 = 0.01 * rng.standard_normal(p.coef_shape)
        self.V0 = 0.01 * rng.standard_normal(p.coef_shape)
        self.x0 = np.zeros(p.n_outer)
        train = BatchStream(p.n_train, BATCH_SIZE, rng)
        val = BatchStream(p.n_val, BATCH_SIZE, rng)
        self.n_iter = train.batches_per_pass()
        self.rows, self.offsets = train.take(self.n_iter)
        self.val_rows, self.val_offsets = val.take(self.n_iter)
        self.saba_val_batch = SABA(batch_size=BATCH_SIZE)._val_batch_size(p)
        saba_val = BatchStream(p.n_val, self.saba_val_batch, rng)
        self.saba_val_rows, self.saba_val_offsets = saba_val.take(self.n_iter)
        self.args = p.kernel_arguments()
        self.inner_step = 0.1
        self.inner_steps = np.full(p.coef_shape[1], self.inner_step)
        self.outer_step = np.full(p.n_outer, 1e-3)
        self.lower = np.full(p.n_outer, -15.0)
        self.upper = np.full(p.n_outer, 15.0)
        K, n_cols = p.coef_shape
        self.memory = (
            np.zeros((p.n_train, K)), np.zeros((p.n_train, K)), np.zeros((p.n_val, K)),
            np.zeros(p.n_train), np.zeros((K, n_cols)), np.zeros((K, n_cols)),
            np.zeros((K, n_cols)),
        )
        from skbilevel.solvers.soba import _NO_MEMORY

        self.no_memory = _NO_MEMORY
        self.X = data.X_train
        self.y = np.asarray(data.y_train, dtype=np.float64)
        self.solvers = {}
        for name, cls in (("soba", SOBA), ("saba", SABA)):
            solver = cls(batch_size=BATCH_SIZE)
            state = solver._initialize(p, self.x0.copy(), np.random.default_rng(seed))
            state.inner_step, state.outer_step = self.inner_step, self.outer_step.copy()
            memory = getattr(state, "memory", _NO_MEMORY)
            self.solvers[name] = (solver, state, memory)

    def describe(self):
        p = self.problem
        return (f"IJCNN1: dense {p.n_train:,} x {p.train.shape[1]} (validation "
                f"{p.n_val:,}), logistic, FeatureL2, intercept; {self.n_iter} "
                f"iterations of batch {BATCH_SIZE} + validation batch {BATCH_SIZE} "
                f"(SOBA) or {self.saba_val_batch} (SABA's default)")

    def _kernel(self, saga, val_rows, val_offsets):
        Z, V, x = self.Z0.copy(), self.V0.copy(), self.x0.copy()
        single_loop_chunk(
            *self.args, Z, V, x, self.rows, self.offsets, val_rows, val_offsets,
            self.inner_steps,
            self.outer_step, self.lower, self.upper, saga,
            self.memory if saga else self.no_memory,
        )
        return Z, V, x

    def soba_kernel(self):
        return self._kernel(False, self.val_rows, self.val_offsets)

    def saba_kernel(self):
        return self._kernel(True, self.saba_val_rows, self.saba_val_offsets)

    def saba_kernel_val64(self):
        return self._kernel(True, self.val_rows, self.val_offsets)

    def _solver_epoch(self, name):
        solver, state, memory = self.solvers[name]
        state.z, state.v, state.x = self.Z0.ravel().copy(), self.V0.ravel().copy(), self.x0.copy()
        solver._kernel_epoch(self.problem, state, memory)

    def soba_solver(self):
        self._solver_epoch("soba")

    def saba_solver(self):
        self._solver_epoch("saba")

    def numpy_gradient(self):
        return numpy_gradient(self.X, self.y, "logistic", self.Z0, np.exp(self.x0))


def run_timings(case, args, rows):
    print()
    print(case.describe())
    funcs = {
        "numpy_grad": case.numpy_gradient,
        "soba_kernel": case.soba_kernel,
        "saba_kernel": case.saba_kernel,
        "saba_kernel_val64": case.saba_kernel_val64,
        "soba_solver_epoch": case.soba_solver,
        "saba_solver_epoch": case.saba_solver,
    }
    t = _common.time_interleaved(funcs, repeat=args.repeat, warmup=2, clock=args.clock)
    grad = t["numpy_grad"]
    labels = {
        "numpy_grad": "NumPy full gradient",
        "soba_kernel": "SOBA epoch, kernel call",
        "saba_kernel": "SABA epoch, kernel call",
        "saba_kernel_val64": "SABA epoch, kernel call, validation batch 64",
        "soba_solver_epoch": "SOBA epoch, SOBA._kernel_epoch",
        "saba_solver_epoch": "SABA epoch, SABA._kernel_epoch",
    }
    table = []
    for key, label in labels.items():
        timing = t[key]
        ratio = timing.median / grad.median
        table.append({"quantity": label, "median ms": 1e3 * timing.median,
                      "min ms": 1e3 * timing.min,
                      "ratio to NumPy gradient (median)": ratio,
                      "ratio (min)": timing.min / grad.min})
        rows.append({"dataset": "ijcnn1", "quantity": key, "value": timing.median,
                     "unit": f"s ({args.clock})", "min": timing.min,
                     "repeat": len(timing.times)})
        if key != "numpy_grad":
            rows.append({"dataset": "ijcnn1", "quantity": f"{key} / numpy_grad",
                         "value": ratio, "unit": "x", "min": timing.min / grad.min,
                         "repeat": ""})
    _common.print_table(
        table, list(table[0]),
        title=f"Medians of {args.repeat} interleaved runs ({args.clock} time):",
    )
    for name, target in TARGET_RATIO.items():
        for what, key in (("kernel call", f"{name}_kernel"),
                          ("solver's epoch", f"{name}_solver_epoch")):
            ratio = t[key].median / grad.median
            verdict = "met" if ratio <= target else "NOT met"
            print(f"{name.upper()} epoch ({what}) / NumPy gradient: {ratio:.2f}, "
                  f"target <= {target:g}: {verdict}")


# -- Compile time ------------------------------------------------------------

_COMPILE_SNIPPET = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from skbilevel.problems import FeatureL2, LinearBilevelProblem
from skbilevel.solvers import get_solver
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((400, 10))
y = np.where(X @ rng.standard_normal(10) + rng.standard_normal(400) > 0, 1.0, -1.0)
problem = LinearBilevelProblem(X[:300], y[:300], X[300:], y[300:],
                               loss="logistic", hyperparams=FeatureL2())
times = []
for _ in range(2):
    start = time.perf_counter()
    get_solver(sys.argv[1]).solve(problem, max_epochs=2, random_state=0)
    times.append(time.perf_counter() - start)
print(json.dumps({"import": t1 - t0, "fits": times}))
"""

#: Cold runs of each first fit (the compile time varies by about a fifth
#: from run to run on a shared machine); the median is reported.
COMPILE_RUNS = 3


def run_compile(rows):
    table = []
    for name in ("saba", "soba"):
        runs = [_common.run_cold_and_warm(_COMPILE_SNIPPET, [name], timeout=900)
                for _ in range(COMPILE_RUNS)]
        line = {"solver": name}
        for i, run in enumerate(("cold", "warm")):
            compile_times = [res[i]["fits"][0] - res[i]["fits"][1] for res in runs]
            median = float(np.median(compile_times))
            line[f"{run} compile s (median)"] = median
            line[f"{run} min s"], line[f"{run} max s"] = min(compile_times), max(compile_times)
            rows.append({"dataset": "numba", "quantity": f"compile_{run}_{name}_first_fit",
                         "value": median, "unit": "s (wall)", "min": min(compile_times),
                         "repeat": COMPILE_RUNS})
        table.append(line)
    print()
    _common.print_table(
        table, list(table[0]),
        title=f"Numba compile time of a first fit (2 epochs, 300-row dense logistic "
              f"FeatureL2 problem), each solver alone in a fresh process; {COMPILE_RUNS} "
              "runs, each with a new NUMBA_CACHE_DIR (cold: empty, warm: filled by the "
              "cold run); target: <= 5 s cold, < 1 s warm:",
    )
    for run, target in (("cold", 5.0), ("warm", 1.0)):
        value = table[0][f"{run} compile s (median)"]
        met = value <= target if run == "cold" else value < target
        print(f"SABA first fit, {run} cache: {value:.2f} s (median), target "
              f"{'<=' if run == 'cold' else '<'} {target:g} s: {'met' if met else 'NOT met'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed runs per figure, median reported (default 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--clock", choices=sorted(_common.CLOCKS), default="cpu",
                        help="cpu: CPU time of the thread (default); wall")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the compile-time subprocesses")
    args = parser.parse_args(argv)
    print("bench_epochs: SOBA and SABA epochs on IJCNN1 vs one NumPy full gradient")
    _common.print_environment()
    data = _common.load_dataset(load_ijcnn1, data_home=args.data_home, dense=True)
    rows = []
    with _common.limit_blas_threads(1):
        print(f"BLAS threads during the timings: {_common.blas_threads()}")
        run_timings(EpochCase(data, args.seed), args, rows)
    if not args.no_compile:
        run_compile(rows)
    path = _common.save_results(
        rows, RESULTS_NAME,
        columns=["dataset", "quantity", "value", "unit", "min", "repeat"],
    )
    print(f"\nSaved {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
