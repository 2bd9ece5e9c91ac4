"""Benchmark: one epoch of the fused minibatch inner oracle vs one NumPy gradient.

For each dataset, a :class:`~skbilevel.problems.LinearBilevelProblem` with a
per-feature L2 map (``FeatureL2``) and an intercept is built, and the script
times:

- one *epoch* of ``problem.inner_oracles(z, x, v, rows)`` (``d1 G``,
  ``d11 G v`` and ``d21 G v`` from one kernel pass), with ``rows`` running
  over a random permutation of the training rows cut into consecutive batches
  of 64 (the last one shorter);
- one full-data gradient of the inner objective written directly with
  NumPy/SciPy matrix products (margins ``X @ W.T + b``, the loss derivative
  vectorized in NumPy, then ``X.T @ G / n + r * W``), not through skbilevel;

and prints the ratio ``epoch time / NumPy gradient time`` (target: at most 2
on IJCNN1). The epoch is timed two ways: driven from Python, one
``inner_oracles`` call per batch (the per-call cost of the public API), and
in one kernel call, ``_kernels.epoch_oracles``, which computes the same
oracles of every batch (L2 parts included, ``d21 G v`` of the per-feature
map, margins once per row) and writes each batch's result over the last
(what a solver would consume): the issue's target is judged on the latter.
It also splits the Python-driven epoch into the Numba kernel, the dense
``O(K p)`` regularization work done in Python for every batch, and the
remaining Python glue, and measures the Numba compile time of the first
oracle call in fresh subprocesses (cold: empty ``NUMBA_CACHE_DIR``; warm: the
cache written by the cold run).

Datasets: IJCNN1 dense (35,000 training rows, binary logistic, labels +-1)
and 20 Newsgroups tf-idf (CSR, 11,314 x 130,107, multinomial, 20 classes; its
test split stands as validation split, which the inner oracles never read).

Run from the repository's root::

    python benchmarks/bench_oracles.py            # IJCNN1 and 20 Newsgroups
    python benchmarks/bench_oracles.py --quick    # IJCNN1 only

Figures are saved to ``benchmarks/results/bench_oracles.csv``. Timings are
medians over ``--repeat`` runs, after a warm-up call that excludes Numba
compilation; all the figures of a dataset are timed in turn, round after
round, so that they can be compared. The NumPy reference runs with one BLAS
thread by default (``--blas-threads``), like the serial kernels: on small
products a second OpenBLAS thread can make a call tens of times slower on a
loaded or virtualized machine.

Reading the breakdown: "Numba kernel calls only" replays the epoch's kernel
calls with the inputs prepared beforehand; "outside the kernel" is everything
else ``inner_oracles`` does per batch in Python; "penalty/cross NumPy work"
times, on its own, the library's helpers that build the ``r * z`` and
``r * v`` parts and ``d21 G v`` over the whole ``K x p`` coefficient matrix.
Parts timed alone do not add up exactly (caches, allocations).
"""

import argparse

import numpy as np
from scipy.special import expit

import _common  # noqa: I001  (also puts the in-tree skbilevel on sys.path)
from skbilevel.datasets import load_20newsgroups_tfidf, load_ijcnn1
from skbilevel.problems import FeatureL2, LinearBilevelProblem
from skbilevel.problems import _kernels

BATCH_SIZE = 64
TARGET_RATIO = {"ijcnn1": 2.0}
RESULTS_NAME = "bench_oracles"


# -- NumPy/SciPy reference: written here, independently of skbilevel --------


def _margins(X, W):
    """``X @ W.T + b`` for coefficients ``W`` of shape (K, p + 1), intercept last."""
    return np.asarray(X @ W[:, :-1].T) + W[:, -1]


def _loss_derivative(loss, U, y):
    """Derivative of the loss in the margins, row by row: shape (n, K)."""
    if loss == "logistic":
        y = y[:, None]
        return -y * expit(-y * U)
    # Multinomial: softmax(U) - onehot(y).
    P = np.exp(U - U.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(len(y)), y.astype(np.intp)] -= 1.0
    return P


def _average_back(X, G, r, W):
    """``X.T @ G / n + r * W`` on the features, ``mean(G)`` on the intercept."""
    out = np.empty_like(W)
    out[:, :-1] = np.asarray(X.T @ G).T / X.shape[0] + r * W[:, :-1]
    out[:, -1] = G.mean(axis=0)
    return out


def numpy_gradient(X, y, loss, W, r):
    """``d1 G(z, x)`` on all training rows, as a (K, p + 1) matrix."""
    return _average_back(X, _loss_derivative(loss, _margins(X, W), y), r, W)


def numpy_gradient_hvp(X, y, loss, W, V, r):
    """``d1 G`` and ``d11 G v`` on all training rows, sharing the margins."""
    U, Q = _margins(X, W), _margins(X, V)
    G = _loss_derivative(loss, U, y)
    if loss == "logistic":
        prob = np.abs(G)  # sigmoid(-y u)
        H = prob * (1.0 - prob) * Q
    else:
        P = G.copy()
        P[np.arange(len(y)), y.astype(np.intp)] += 1.0
        PQ = P * Q
        H = PQ - P * PQ.sum(axis=1, keepdims=True)
    return _average_back(X, G, r, W), _average_back(X, H, r, V)


# -- The problems ------------------------------------------------------------


class Case:
    """A problem, a random point ``(z, x, v)`` and the batches of one epoch."""

    def __init__(self, name, label, X_train, y_train, X_val, y_val, loss, seed):
        self.name, self.label, self.loss = name, label, loss
        self.X, self.y = X_train, np.asarray(y_train, dtype=np.float64)
        self.problem = LinearBilevelProblem(
            X_train, y_train, X_val, y_val, loss=loss, hyperparams=FeatureL2(),
            fit_intercept=True,
        )
        p = self.problem
        rng = np.random.default_rng(seed)
        self.z = 0.01 * rng.standard_normal(p.n_inner)
        self.v = 0.01 * rng.standard_normal(p.n_inner)
        self.x = np.zeros(p.n_outer)
        perm = rng.permutation(p.n_train)
        self.batches = [
            perm[start:start + BATCH_SIZE]
            for start in range(0, p.n_train, BATCH_SIZE)
        ]
        self.W = self.z.reshape(p.coef_shape)
        self.V = self.v.reshape(p.coef_shape)
        self.r = np.exp(self.x)  # FeatureL2: r = exp(x), one per feature

    def describe(self):
        p = self.problem
        kind = "CSR" if p.train.sparse else "dense"
        nnz = f", {self.X.nnz:,} non-zeros" if p.train.sparse else ""
        return (
            f"{self.label}: {kind} {p.n_train:,} x {p.train.shape[1]:,}{nnz}, "
            f"loss={self.loss}, coef K x (p+1) = {p.coef_shape[0]} x "
            f"{p.coef_shape[1]:,}, {len(self.batches)} batches of "
            f"{BATCH_SIZE} (last {len(self.batches[-1])})"
        )

    def check_reference(self):
        """Max abs difference of the NumPy reference with the library's oracles."""
        p = self.problem
        grad, hvp = numpy_gradient_hvp(self.X, self.y, self.loss, self.W, self.V,
                                       self.r)
        err_grad = np.abs(grad.ravel() - p.inner_grad(self.z, self.x)).max()
        err_hvp = np.abs(hvp.ravel() - p.inner_hvp(self.z, self.x, self.v)).max()
        return err_grad, err_hvp

    # Each method below runs one epoch (or one full pass) of some part of
    # the work.

    def epoch_oracles(self):
        p, z, x, v = self.problem, self.z, self.x, self.v
        for rows in self.batches:
            p.inner_oracles(z, x, v, rows)

    def _kernel_args(self):
        """What ``inner_oracles`` hands to the kernel, built once."""
        p = self.problem
        weights = [np.full(len(rows), 1.0 / len(rows)) for rows in self.batches]
        grad, hvp = np.zeros(p.coef_shape), np.zeros(p.coef_shape)
        return p, weights, grad, hvp

    def epoch_kernel(self):
        """Only the Numba kernel calls of an epoch (outputs allocated once)."""
        p, weights, grad, hvp = self._kargs
        cross = np.empty(0)
        for rows, w in zip(self.batches, weights):
            _kernels.batch_derivatives(
                *p.train.arrays, p.y_train, rows, w, p.loss.code, self.W,
                self.V, p.fit_intercept, grad, hvp, cross,
            )

    def epoch_dispatch(self):
        """The same number of kernel calls on empty batches: call overhead only."""
        p, _, grad, hvp = self._kargs
        rows, w, cross = np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
        for _ in self.batches:
            _kernels.batch_derivatives(
                *p.train.arrays, p.y_train, rows, w, p.loss.code, self.W,
                self.V, p.fit_intercept, grad, hvp, cross,
            )

    def kernel_one_pass(self):
        """One kernel call on all training rows: kernel throughput, no per-call cost."""
        p, _, grad, hvp = self._kargs
        rows = np.arange(p.n_train, dtype=np.int64)
        w = np.full(p.n_train, 1.0 / p.n_train)
        _kernels.batch_derivatives(
            *p.train.arrays, p.y_train, rows, w, p.loss.code, self.W, self.V,
            p.fit_intercept, grad, hvp, np.empty(0),
        )

    def _epoch_args(self):
        """Inputs of ``_kernels.epoch_oracles`` for the epoch, built once."""
        p = self.problem
        K, n_cols = p.coef_shape
        rows = np.concatenate(self.batches).astype(np.int64)
        offsets = np.zeros(len(self.batches) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in self.batches], out=offsets[1:])
        weights = np.concatenate([p._train_weights(self.x, b) for b in self.batches])
        r = np.zeros(n_cols)
        r[:n_cols - p.fit_intercept] = p.hyperparams.l2_strengths(self.x)
        _, groups, _ = p.hyperparams.kernel_arguments()
        return rows, offsets, weights, r, groups

    def _epoch_outputs(self, n_slots):
        p = self.problem
        return (np.empty((n_slots, *p.coef_shape)), np.empty((n_slots, *p.coef_shape)),
                np.empty((n_slots, p.n_outer)), np.empty((n_slots, 0)))

    def epoch_one_call(self):
        """The whole epoch of fused oracles in one kernel call (one output slot)."""
        p = self.problem
        rows, offsets, weights, r, groups = self._eargs
        _kernels.epoch_oracles(
            *p.train.arrays, p.y_train, rows, offsets, weights, p.loss.code,
            self.W, self.V, p.fit_intercept, r, groups, *self._eout,
        )

    def check_epoch_kernel(self, n_check=3):
        """Max abs difference of ``epoch_oracles`` with ``inner_oracles`` on the last batches."""
        p = self.problem
        rows, offsets, weights, r, groups = self._eargs
        n_slots = min(n_check, len(self.batches))
        grad, hvp, cross, terms = self._epoch_outputs(n_slots)
        # Only the last n_slots batches: the kernel runs on all of them.
        _kernels.epoch_oracles(
            *p.train.arrays, p.y_train, rows, offsets, weights, p.loss.code,
            self.W, self.V, p.fit_intercept, r, groups, grad, hvp, cross, terms,
        )
        err = 0.0
        n = len(self.batches)
        for t in range(n - n_slots, n):
            ref = p.inner_oracles(self.z, self.x, self.v, self.batches[t])
            for out, expected in zip((grad, hvp, cross), ref):
                scale = max(np.abs(expected).max(), 1e-300)
                got = out[t % n_slots].ravel()
                err = max(err, np.abs(got - expected).max() / scale)
        return err

    def epoch_dense(self):
        """The O(K p) work ``inner_oracles`` does in NumPy for every batch.

        Regularization parts of ``d1 G`` and ``d11 G v`` (allocation of the
        outputs included) and the whole of ``d21 G v``, through the
        library's own helpers when they exist, else an equivalent in NumPy.
        """
        p, z, x, v = self.problem, self.z, self.x, self.v
        no_terms = np.empty(0)
        if self.library_dense:
            for rows in self.batches:
                p._penalty_grad(x, self.W)
                p._penalty_grad(x, self.V)
                p._cross(z, x, v, rows, no_terms)
        else:
            hp = p.hyperparams
            for rows in self.batches:
                for M in (self.W, self.V):
                    out = np.zeros(p.coef_shape)
                    out[:, :-1] = hp.l2_strengths(x) * M[:, :-1]
                hp.l2_strengths_vjp(x, (self.W[:, :-1] * self.V[:, :-1]).sum(0))

    def epoch_zeros(self):
        """Only the two ``np.zeros(coef_shape)`` of every batch."""
        shape = self.problem.coef_shape
        for _ in self.batches:
            np.zeros(shape)
            np.zeros(shape)

    def numpy_gradient(self):
        return numpy_gradient(self.X, self.y, self.loss, self.W, self.r)

    def numpy_gradient_hvp(self):
        return numpy_gradient_hvp(self.X, self.y, self.loss, self.W, self.V,
                                  self.r)

    def prepare(self):
        self._kargs = self._kernel_args()
        self._eargs = self._epoch_args()
        self._eout = self._epoch_outputs(1)
        p = self.problem
        self.library_dense = hasattr(p, "_penalty_grad") and hasattr(p, "_cross")


def load_cases(args):
    """The benchmark cases; exits cleanly if a dataset is missing."""
    ijcnn = _common.load_dataset(load_ijcnn1, data_home=args.data_home,
                                 dense=True)
    cases = [Case("ijcnn1", "IJCNN1", ijcnn.X_train, ijcnn.y_train,
                  ijcnn.X_val, ijcnn.y_val, "logistic", args.seed)]
    if not args.quick:
        news = _common.load_dataset(load_20newsgroups_tfidf,
                                    data_home=args.data_home)
        cases.append(Case("20newsgroups", "20 Newsgroups", news.X_train,
                          news.y_train, news.X_test, news.y_test,
                          "multinomial", args.seed))
    return cases


# -- Timing ------------------------------------------------------------------


def run_case(case, args, rows):
    """Time one case; append CSV rows; return the summary figures."""
    case.prepare()
    n_batches = len(case.batches)
    err_grad, err_hvp = case.check_reference()
    err_epoch = case.check_epoch_kernel()
    print()
    print(case.describe())
    print(f"NumPy reference vs library, max abs difference: gradient "
          f"{err_grad:.1e}, HVP {err_hvp:.1e}")
    print(f"epoch_oracles vs inner_oracles (last batches), max relative "
          f"difference: {err_epoch:.1e}")

    # Timed in turn, round after round, so that the medians can be compared
    # (and subtracted) even when the machine's load changes during the run.
    t = _common.time_interleaved({
        "epoch_one_call": case.epoch_one_call,
        "epoch": case.epoch_oracles,
        "kernel": case.epoch_kernel,
        "dispatch": case.epoch_dispatch,
        "dense": case.epoch_dense,
        "zeros": case.epoch_zeros,
        "kernel_one_pass": case.kernel_one_pass,
        "numpy_grad": case.numpy_gradient,
        "numpy_grad_hvp": case.numpy_gradient_hvp,
    }, repeat=args.repeat, warmup=1, clock=args.clock)
    medians = {key: timing.median for key, timing in t.items()}
    medians["outside_kernel"] = medians["epoch"] - medians["kernel"]
    epoch = medians["epoch"]

    labels = {
        "epoch_one_call": "epoch of fused oracles, one kernel call",
        "epoch": "epoch of inner_oracles (batch 64), from Python",
        "kernel": "  Numba kernel calls only",
        "dispatch": "    of which call overhead (empty batches)",
        "outside_kernel": "  outside the kernel (epoch - kernel)",
        "dense": "    penalty/cross NumPy work, timed alone"
                 + ("" if case.library_dense else " (replica)"),
        "zeros": "      of which np.zeros(coef_shape) x 2",
        "kernel_one_pass": "kernel, one call on all rows",
        "numpy_grad": "NumPy full gradient",
        "numpy_grad_hvp": "NumPy full gradient + HVP",
    }
    per_epoch = {"epoch_one_call", "epoch", "kernel", "dispatch", "outside_kernel", "dense",
                 "zeros"}
    table = []
    for key, label in labels.items():
        seconds = medians[key]
        line = {"quantity": label, "ms": 1e3 * seconds,
                "% of epoch": 100.0 * seconds / epoch}
        if key in per_epoch:
            line["us per batch"] = 1e6 * seconds / n_batches
        table.append(line)
        timing = t.get(key)
        rows.append({
            "dataset": case.name, "quantity": key, "value": seconds,
            "unit": f"s ({args.clock})", "min": timing.min if timing else "",
            "repeat": len(timing.times) if timing else "",
        })
    _common.print_table(
        table, ["quantity", "ms", "us per batch", "% of epoch"],
        title=f"Medians of {args.repeat} interleaved runs ({args.clock} time):",
    )

    summary = {
        "dataset": case.label,
        "batches": n_batches,
        "one-call epoch ms": 1e3 * medians["epoch_one_call"],
        "python epoch ms": 1e3 * epoch,
        "numpy grad ms": 1e3 * medians["numpy_grad"],
        "epoch / numpy grad": medians["epoch_one_call"] / medians["numpy_grad"],
        "python epoch / numpy grad": epoch / medians["numpy_grad"],
        "epoch / numpy grad+hvp": medians["epoch_one_call"] / medians["numpy_grad_hvp"],
        "kernel calls / numpy grad": medians["kernel"] / medians["numpy_grad"],
        "outside kernel %": 100.0 * medians["outside_kernel"] / epoch,
        "dense share %": 100.0 * medians["dense"] / epoch,
        "target": TARGET_RATIO.get(case.name, ""),
    }
    for key in ("epoch / numpy grad", "python epoch / numpy grad",
                "epoch / numpy grad+hvp",
                "kernel calls / numpy grad", "outside kernel %",
                "dense share %"):
        rows.append({"dataset": case.name, "quantity": key,
                     "value": summary[key], "unit": "%" if "%" in key else "x"})
    return summary


# -- Compile time ------------------------------------------------------------

_COMPILE_SNIPPET = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import scipy.sparse as sp
from skbilevel.problems import FeatureL2, LinearBilevelProblem
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 22))
y = np.where(rng.random(200) < 0.5, -1.0, 1.0)
dense = LinearBilevelProblem(X[:150], y[:150], X[150:], y[150:],
                             loss="logistic", hyperparams=FeatureL2())
Xs = sp.random(200, 50, density=0.1, format="csr", random_state=0)
ys = rng.integers(0, 5, 200)
sparse = LinearBilevelProblem(Xs[:150], ys[:150], Xs[150:], ys[150:],
                              loss="multinomial", hyperparams=FeatureL2())
rows = np.arange(64)
out = {"import": t1 - t0}
for name, p in (("dense logistic", dense), ("CSR multinomial", sparse)):
    z = 0.01 * rng.standard_normal(p.n_inner)
    v = 0.01 * rng.standard_normal(p.n_inner)
    x = np.zeros(p.n_outer)
    start = time.perf_counter()
    p.inner_oracles(z, x, v, rows)
    middle = time.perf_counter()
    p.inner_oracles(z, x, v, rows)
    out[name] = [middle - start, time.perf_counter() - middle]
print(json.dumps(out))
"""


def run_compile(rows):
    """Cold and warm first-call times, in fresh subprocesses."""
    cold, warm = _common.run_cold_and_warm(_COMPILE_SNIPPET, timeout=900)
    table = []
    for run, res in (("cold (empty cache)", cold), ("warm (cache hit)", warm)):
        line = {"run": run, "import s": res["import"]}
        for name in ("dense logistic", "CSR multinomial"):
            line[f"1st call {name} s"] = res[name][0]
            line[f"2nd call {name} ms"] = 1e3 * res[name][1]
        table.append(line)
        key = run.split()[0]
        rows.append({"dataset": "numba", "quantity": f"compile_{key}_import",
                     "value": res["import"], "unit": "s"})
        for name, short in (("dense logistic", "dense"),
                            ("CSR multinomial", "csr")):
            rows.append({"dataset": "numba",
                         "quantity": f"compile_{key}_first_call_{short}",
                         "value": res[name][0], "unit": "s"})
    print()
    _common.print_table(
        table, list(table[0]),
        title="Numba compile time: first inner_oracles call in a fresh "
              "process (NUMBA_CACHE_DIR = new temporary folder):",
    )
    return cold, warm


# -- Main --------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="only IJCNN1 (smoke test)")
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed runs per figure, median reported (default 7)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of z, v and of the batches (default 0)")
    parser.add_argument("--data-home", default=None,
                        help="data folder (default: SKBILEVEL_DATA or "
                             "../shared/data)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads of the NumPy reference (default 1, "
                             "like the serial kernels; 0: library default)")
    parser.add_argument("--clock", choices=sorted(_common.CLOCKS), default="cpu",
                        help="cpu: CPU time of the thread, robust to other jobs "
                             "on the machine (default); wall: elapsed time")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the compile-time subprocesses")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1.")

    print("bench_oracles: one epoch of inner_oracles (batch 64) vs one NumPy "
          "full gradient")
    _common.print_environment()
    cases = load_cases(args)

    rows = []
    with _common.limit_blas_threads(args.blas_threads or None):
        print(f"BLAS threads during the timings: {_common.blas_threads()}")
        summaries = [run_case(case, args, rows) for case in cases]
    print()
    _common.print_table(
        summaries, list(summaries[0]),
        title="Summary (ratio = epoch time / NumPy full-gradient time):",
    )
    for s in summaries:
        if s["target"] != "":
            verdict = "met" if s["epoch / numpy grad"] <= s["target"] else "NOT met"
            print(f"{s['dataset']}: one-call epoch ratio "
                  f"{s['epoch / numpy grad']:.1f}, target "
                  f"<= {s['target']:g}: {verdict}")

    if not args.no_compile:
        run_compile(rows)

    path = _common.save_results(
        rows, RESULTS_NAME,
        columns=["dataset", "quantity", "value", "unit", "min", "repeat"],
    )
    print(f"\nSaved {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
