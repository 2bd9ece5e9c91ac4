"""Several cross-validation folds as one bilevel problem with shared hyperparameters."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs

from ..problems import GroupedL2, LinearBilevelProblem
from ..problems._design import DesignMatrix
from ..problems._linear import data_hessian
from ..solvers._exact import DENSE_HESSIAN_MAX

#: A fold's block of the stacked rows is made dense for its Hessian when at
#: least this share of its entries is stored: the stacked matrix is CSR even
#: when the folds' data were dense (800 x 201 rows of ones: 62 ms per block by
#: the CSR kernel).
DENSE_BLOCK_FILL = 0.25


class FoldAverageProblem(LinearBilevelProblem):
    """The folds' problems side by side: one model per fold, one shared ``x``.

    With ``K`` folds of ``n_f`` training and ``m_f`` validation rows and
    ``N = sum n_f`` training rows::

        G(z, x) = sum_f (n_f / N) G_f(z_f, x)        F(z, x) = (1/K) sum_f F_f(z_f, x)

    The minimizer of ``G`` in ``z = (z_1, ..., z_K)`` is made of the folds'
    own minimizers, so ``h(x) = F(z*(x), x)`` is the average of the folds'
    validation losses.

    This is itself a linear bilevel problem, so every solver runs on it as
    fast as on one split (SOBA and SABA: one Numba call per epoch): the rows
    of all folds are stacked, and the rows of fold ``f`` see only the
    columns of fold ``f``'s model (a block-diagonal CSR matrix; the folds'
    intercepts are explicit unpenalized columns). The data term of ``G`` is
    then the plain mean over the ``N`` stacked rows, each fold's L2 term
    carries the factor ``n_f / N`` (``GroupedL2``'s ``scale``), and each
    validation row of fold ``f`` weighs ``M / (K m_f)`` in ``F``, with
    ``M = sum m_f``. Only maps that leave the sample weights alone (L2
    strengths) can be shared by folds.

    Parameters
    ----------
    problems : list of LinearBilevelProblem
        One problem per fold, all with the same loss, number of features,
        intercept setting and hyperparameter dimension, each with an L2 map
        (:class:`~skbilevel.problems.GroupedL2` or a subclass).
    n_jobs : int or None, default=None
        Full-data derivatives (the reference solver) run over the folds'
        rows in this many threads (the kernels release the GIL); None or 1
        runs them in one.

    The folds' common ``spread_penalty`` weighs the spread of the shared
    ``x`` in ``F``, around the mean of the folds' centres
    (``spread_offset``).
    """

    def __init__(self, problems, n_jobs=None):
        if len(problems) < 1:
            raise ValueError("FoldAverageProblem needs at least one fold.")
        first = problems[0]
        if not all(isinstance(p.hyperparams, GroupedL2) for p in problems):
            raise ValueError("folds can only share L2 strengths (GroupedL2 maps).")
        shapes = {(p.coef_shape, p.n_outer, p.fit_intercept, p.loss.code, p.spread_penalty)
                  for p in problems}
        if len(shapes) != 1:
            raise ValueError(
                "the folds must share their loss, hyperparameter dimension, number "
                "of features, intercept setting and spread penalty."
            )
        self.n_folds = len(problems)
        self.n_jobs = n_jobs
        self._pool = None
        train = np.array([p.n_train for p in problems])
        val = np.array([p.n_val for p in problems])
        self._width = first.coef_shape[1]
        self._row_bounds = np.concatenate([[0], np.cumsum(train)])
        self._fold_offsets = [p.spread_offset for p in problems]
        scale = np.concatenate([
            np.r_[n / train.sum() * p.hyperparams.scale_, np.zeros(int(p.fit_intercept))]
            for p, n in zip(problems, train)
        ])
        groups = np.concatenate([
            np.r_[p.hyperparams.groups_, np.zeros(int(p.fit_intercept), dtype=np.intp)]
            for p in problems
        ])
        super().__init__(
            _stacked_blocks([p.train for p in problems], first.fit_intercept),
            np.concatenate([p.y_train for p in problems]),
            _stacked_blocks([p.val for p in problems], first.fit_intercept),
            np.concatenate([p.y_val for p in problems]),
            loss=first.loss, hyperparams=GroupedL2(groups, scale=scale),
            fit_intercept=False,
            sample_weight=np.concatenate([
                np.ones(p.n_train) if p.sample_weight is None else p.sample_weight
                for p in problems
            ]),
            val_sample_weight=np.repeat(val.sum() / (len(problems) * val), val),
            spread_penalty=first.spread_penalty,
        )

    def _spread_offset(self):
        """The folds' mean centre of the spread penalty (their columns are not features)."""
        return np.mean(self._fold_offsets, axis=0)

    @property
    def hessian_block_size(self):
        if self.n_inner <= DENSE_HESSIAN_MAX:
            return self.n_inner
        return self.coef_shape[0] * self._width

    def inner_hessian_blocks(self, z, x):
        """The Hessian of each fold's model: the folds' models do not interact.

        One block for all folds when it has at most ``DENSE_HESSIAN_MAX``
        rows: cutting the folds' rows out costs more than the whole product
        (diabetes, 5 folds of 11 coefficients: 0.30 s per fit, 0.53 s in
        blocks).
        """
        if self.hessian_block_size == self.n_inner:
            return super().inner_hessian_blocks(z, x)
        curvatures = self._curvatures(z, x)
        l2 = self.inner_l2(x)
        matrix = self.train.tocsr()
        K, n_cols = self.coef_shape
        blocks = []
        for f in range(self.n_folds):
            rows = slice(self._row_bounds[f], self._row_bounds[f + 1])
            columns = np.arange(f * self._width, (f + 1) * self._width)
            fold = matrix[rows][:, columns]
            if fold.nnz >= DENSE_BLOCK_FILL * fold.shape[0] * fold.shape[1]:
                fold = fold.toarray()  # BLAS products, not the CSR kernel
            design = DesignMatrix(fold)
            block = data_hessian(design, False, curvatures[rows])
            index = (np.arange(K)[:, None] * n_cols + columns).ravel()
            block[np.diag_indices(len(index))] += l2[index]
            blocks.append((index, block))
        return blocks

    def split(self, vector):
        """Return the folds' blocks ``z_f`` of a vector over the inner variables.

        Each block is laid out as the fold's own problem lays out ``z``.
        """
        matrix = self._matrix(vector)
        return [
            matrix[:, f * self._width:(f + 1) * self._width].ravel()
            for f in range(self.n_folds)
        ]

    def close(self):
        """Shut the thread pool of ``n_jobs`` down (if any)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _train_terms(self, z, x, v, rows, grad, hvp, cross):
        """Add the data terms to ``grad`` and ``hvp``; full data in ``n_jobs`` threads.

        Each thread averages over a chunk of the rows; the chunks' means,
        weighted by their shares of the rows, make the mean over all rows.
        (``cross`` stays empty: L2 maps have no per-row cross term.)
        """
        n_threads = min(effective_n_jobs(self.n_jobs), self.n_folds)
        if n_threads <= 1 or len(rows) < self.n_train:
            super()._train_terms(z, x, v, rows, grad, hvp, cross)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=n_threads)
        chunks = np.array_split(rows, n_threads)

        def chunk_terms(chunk):
            out = np.zeros_like(grad), np.zeros_like(hvp)
            super(FoldAverageProblem, self)._train_terms(z, x, v, chunk, *out, cross)
            return out

        for chunk, (chunk_grad, chunk_hvp) in zip(chunks, self._pool.map(chunk_terms, chunks)):
            share = len(chunk) / len(rows)
            grad += share * chunk_grad
            hvp += share * chunk_hvp


def _stacked_blocks(designs, fit_intercept):
    """The block-diagonal CSR matrix of the folds' rows (plus intercept columns).

    Built from the blocks' CSR arrays directly: fold ``f``'s column indices
    are shifted by ``f`` block widths.
    """
    data, indices, indptr = [], [], [np.zeros(1, dtype=np.int64)]
    n_rows = n_cols = 0
    for design in designs:
        block = design.tocsr()
        if fit_intercept:
            block = sp.hstack([block, np.ones((block.shape[0], 1))], format="csr")
        data.append(block.data)
        indices.append(block.indices.astype(np.int64) + n_cols)
        indptr.append(block.indptr[1:].astype(np.int64) + indptr[-1][-1])
        n_rows += block.shape[0]
        n_cols += block.shape[1]
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)),
        shape=(n_rows, n_cols),
    )
