"""Several cross-validation folds as one bilevel problem with shared hyperparameters."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import effective_n_jobs

from ..problems import BilevelProblem


class FoldAverageProblem(BilevelProblem):
    """The folds' problems side by side: one model per fold, one shared ``x``.

    With ``K`` folds of ``n_f`` training and ``m_f`` validation rows and
    ``N = sum n_f`` training rows::

        G(z, x) = sum_f (n_f / N) G_f(z_f, x)        F(z, x) = (1/K) sum_f F_f(z_f, x)

    The minimizer of ``G`` in ``z = (z_1, ..., z_K)`` is made of the folds'
    own minimizers, so ``h(x) = F(z*(x), x)`` is the average of the folds'
    validation losses. The weights ``n_f / N`` make ``G`` the plain average
    of the ``N`` training rows (each row weighs ``1 / N``, as in its fold),
    so minibatches of rows drawn over all folds give unbiased estimates and
    the per-sample smoothness constants are those of the folds.

    Only maps that leave the sample weights alone (``weights_samples`` is
    False: L2 strengths) can be shared by folds; their cross derivative
    ``d21 G`` has no data term and is computed exactly.

    Parameters
    ----------
    problems : list of LinearBilevelProblem
        One problem per fold, all with the same hyperparameter dimension.
    n_jobs : int or None, default=None
        Full-data oracles run the folds in this many threads (the kernels
        release the GIL); None or 1 runs them one after the other.
    """

    def __init__(self, problems, n_jobs=None):
        if len(problems) < 1:
            raise ValueError("FoldAverageProblem needs at least one fold.")
        n_outer = {p.n_outer for p in problems}
        if len(n_outer) != 1:
            raise ValueError(f"the folds have different hyperparameter dimensions {n_outer}.")
        if any(p.hyperparams.weights_samples for p in problems):
            raise ValueError("folds cannot share per-sample hyperparameters.")
        self.problems = list(problems)
        self.n_jobs = n_jobs
        self._pool = None
        self.n_outer = n_outer.pop()
        sizes = [p.n_inner for p in problems]
        self.n_inner = int(sum(sizes))
        self._inner = np.cumsum([0] + sizes)
        train = [p.n_train for p in problems]
        val = [p.n_val for p in problems]
        self.n_train, self.n_val = int(sum(train)), int(sum(val))
        self._train = np.cumsum([0] + train)
        self._val = np.cumsum([0] + val)
        self._inner_weight = np.asarray(train, dtype=float) / self.n_train
        self._outer_weight = np.full(len(problems), 1.0 / len(problems))

    # -- helpers -----------------------------------------------------------

    def split(self, vector):
        """Return the fold blocks ``z_f`` of a vector over the inner variables."""
        return [vector[self._inner[f]:self._inner[f + 1]] for f in range(len(self.problems))]

    def _map(self, function):
        """``[function(f, problem) for each fold]``, in threads if ``n_jobs`` asks.

        The thread pool is created at the first call and kept until
        :meth:`close`: the reference solver makes thousands of calls.
        """
        folds = list(enumerate(self.problems))
        n_threads = min(effective_n_jobs(self.n_jobs), len(folds))
        if n_threads <= 1:
            return [function(f, p) for f, p in folds]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=n_threads)
        return list(self._pool.map(lambda fold: function(*fold), folds))

    def close(self):
        """Shut the thread pool down (if any)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    @staticmethod
    def _local(rows, offsets, f):
        """The rows of fold ``f`` among global ``rows``, as local indices."""
        mask = (rows >= offsets[f]) & (rows < offsets[f + 1])
        return rows[mask] - offsets[f]

    def _inner_data_terms(self, rows, compute):
        """Average over the training ``rows`` of the folds' data terms.

        ``compute(f, problem, local_rows)`` returns fold ``f``'s oracle on its
        rows without the L2 part (a vector over ``z_f``); folds with no row
        in the batch contribute zero.
        """
        if rows is None:
            terms = self._map(lambda f, p: self._inner_weight[f] * compute(f, p, None))
            return np.concatenate(terms)
        rows = np.asarray(rows, dtype=np.int64)
        out = []
        for f, p in enumerate(self.problems):
            local = self._local(rows, self._train, f)
            if len(local) == 0:
                out.append(np.zeros(p.n_inner))
            else:
                out.append(len(local) / len(rows) * compute(f, p, local))
        return np.concatenate(out)

    def _outer_terms(self, rows, compute, size):
        """``F``'s weights applied to the folds' outer oracles on validation ``rows``.

        For a batch, each fold's mean over its rows is weighted by its share
        of the batch times ``M / (K m_f)``, the weight of its rows in ``F``.
        """
        if rows is None:
            return self._map(lambda f, p: self._outer_weight[f] * compute(f, p, None))
        rows = np.asarray(rows, dtype=np.int64)
        out = []
        for f, p in enumerate(self.problems):
            local = self._local(rows, self._val, f)
            if len(local) == 0:
                out.append(np.zeros(size(p)))
            else:
                scale = len(local) / len(rows) * self.n_val * self._outer_weight[f] / p.n_val
                out.append(scale * compute(f, p, local))
        return out

    def _l2_part(self, z, x):
        return self.inner_l2(x) * z

    # -- oracles -----------------------------------------------------------

    def inner_value(self, z, x, rows=None):
        blocks = self.split(z)

        def data(f, p, local):
            zf = blocks[f]
            l2 = p.inner_l2(x)
            return np.atleast_1d(p.inner_value(zf, x, local) - 0.5 * l2 @ (zf * zf))

        data_part = self._inner_data_terms(rows, data).sum()
        return data_part + 0.5 * self.inner_l2(x) @ (z * z)

    def inner_grad(self, z, x, rows=None):
        blocks = self.split(z)

        def data(f, p, local):
            return p.inner_grad(blocks[f], x, local) - p.inner_l2(x) * blocks[f]

        return self._inner_data_terms(rows, data) + self._l2_part(z, x)

    def inner_hvp(self, z, x, v, rows=None):
        zb, vb = self.split(z), self.split(v)

        def data(f, p, local):
            return p.inner_hvp(zb[f], x, vb[f], local) - p.inner_l2(x) * vb[f]

        return self._inner_data_terms(rows, data) + self._l2_part(v, x)

    def inner_cross(self, z, x, v, rows=None):
        zb, vb = self.split(z), self.split(v)
        return sum(
            self._inner_weight[f] * p.inner_cross(zb[f], x, vb[f])
            for f, p in enumerate(self.problems)
        )

    def inner_l2(self, x):
        return np.concatenate([
            self._inner_weight[f] * p.inner_l2(x) for f, p in enumerate(self.problems)
        ])

    def sample_smoothness(self, x):
        return np.concatenate([p.sample_smoothness(x) for p in self.problems])

    def outer_value(self, z, x, rows=None):
        blocks = self.split(z)
        terms = self._outer_terms(
            rows, lambda f, p, local: p.outer_value(blocks[f], x, local), lambda p: 1
        )
        return float(np.sum(terms))

    def outer_grad(self, z, x, rows=None):
        blocks = self.split(z)
        return np.concatenate(self._outer_terms(
            rows, lambda f, p, local: p.outer_grad(blocks[f], x, local),
            lambda p: p.n_inner,
        ))

    def outer_grad_x(self, z, x, rows=None):
        return np.zeros(self.n_outer)
