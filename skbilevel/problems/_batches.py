"""Minibatch operations on a design matrix, chosen when a kernel is typed.

A design matrix reaches the kernels that use these operations as a dense
C-ordered float64 array or as the CSR tuple ``(data, indices, indptr)``
(``DesignMatrix.kernel_design``). Each operation is an overload with one
implementation per kind, which Numba picks when it types the calling kernel:
a kernel compiled for dense data holds no CSR code, and the reverse. One
kernel branching at run time between the two compiled both, and took three
times as long to compile for a first fit (``benchmarks/bench_epochs.py``).

Dense rows are copied once into a transposed block (features x rows), so
that the margins of all the rows of a batch, and the sums back over them,
run along contiguous memory and vectorize; a block holds at most
``BLOCK_LIMIT`` values, so a batch of wide rows is processed in several
blocks. CSR rows are visited one by one. Margins and sums of two coefficient
matrices at once (``Z`` and ``V`` of the single-loop solvers) share one pass
over the rows.
"""

import numpy as np
from numba import types
from numba.extending import overload

from ._kernels import (
    BLOCK_LIMIT,
    _dense_batch_margins,
    _dense_batch_scatter,
    prefetch_csr_row,
    prefetch_dense_row,
)

_OVERLOAD_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy",
                     fastmath={"reassoc", "contract"})


def _is_dense(design):
    return isinstance(design, types.Array)


def batch_block(design, max_rows):
    """Return ``(block, rows_per_block)`` for batches of at most ``max_rows`` rows.

    ``block`` is the work array of :func:`batch_margins` and
    :func:`batch_scatter`; a batch is processed ``rows_per_block`` rows at a
    time.
    """


@overload(batch_block, jit_options=_OVERLOAD_JIT)
def _batch_block(design, max_rows):
    if _is_dense(design):
        def dense(design, max_rows):
            n_features = design.shape[1]
            per_block = BLOCK_LIMIT // n_features
            per_block = 1 if per_block < 1 else per_block
            per_block = max_rows if per_block > max_rows else per_block
            return np.empty((n_features, per_block)), per_block

        return dense

    def csr(design, max_rows):
        return np.empty((0, 0)), max_rows

    return csr


def prefetch_row(design, i):
    """Hint that row ``i`` of the design will be read soon."""


@overload(prefetch_row, jit_options=_OVERLOAD_JIT)
def _prefetch_row(design, i):
    if _is_dense(design):
        def dense(design, i):
            prefetch_dense_row(design, i)

        return dense

    def csr(design, i):
        data, indices, indptr = design
        prefetch_csr_row(data, indices, indptr, i)

    return csr


def batch_margins(design, rows, start, stop, block, fit_intercept, W, U, V, Q, both):
    """Set the margins of the rows ``rows[start:stop]``.

    ``U[k, b] = W[k] [d_i, 1]`` for the row ``i = rows[start + b]``, and, if
    ``both``, ``Q[k, b] = V[k] [d_i, 1]`` (otherwise ``V`` and ``Q`` are not
    touched). Dense rows are first copied into ``block``, which
    :func:`batch_scatter` then reads.
    """


@overload(batch_margins, jit_options=_OVERLOAD_JIT)
def _batch_margins(design, rows, start, stop, block, fit_intercept, W, U, V, Q, both):
    if _is_dense(design):
        return _dense_batch_margins

    def csr(design, rows, start, stop, block, fit_intercept, W, U, V, Q, both):
        data, indices, indptr = design
        last = W.shape[1] - 1
        for b in range(stop - start):
            i = rows[start + b]
            for k in range(W.shape[0]):
                u = W[k, last] if fit_intercept else 0.0
                if both:
                    q = V[k, last] if fit_intercept else 0.0
                    for jj in range(indptr[i], indptr[i + 1]):
                        u += data[jj] * W[k, indices[jj]]
                        q += data[jj] * V[k, indices[jj]]
                    Q[k, b] = q
                else:
                    for jj in range(indptr[i], indptr[i + 1]):
                        u += data[jj] * W[k, indices[jj]]
                U[k, b] = u

    return csr


def batch_scatter(design, rows, start, stop, block, fit_intercept, C, G, D, H, both):
    """Add the rows ``rows[start:stop]`` weighted by ``C`` to ``G``.

    ``G[k] += sum_b C[k, b] [d_i, 1]`` over the rows ``i = rows[start + b]``,
    and, if ``both``, ``H[k] += sum_b D[k, b] [d_i, 1]`` (otherwise ``D`` and
    ``H`` are not touched). Dense rows are read from the ``block`` that
    :func:`batch_margins` filled.
    """


@overload(batch_scatter, jit_options=_OVERLOAD_JIT)
def _batch_scatter(design, rows, start, stop, block, fit_intercept, C, G, D, H, both):
    if _is_dense(design):
        return _dense_batch_scatter

    def csr(design, rows, start, stop, block, fit_intercept, C, G, D, H, both):
        data, indices, indptr = design
        last = G.shape[1] - 1
        for b in range(stop - start):
            i = rows[start + b]
            for k in range(G.shape[0]):
                c = C[k, b]
                if both:
                    d = D[k, b]
                    for jj in range(indptr[i], indptr[i + 1]):
                        G[k, indices[jj]] += c * data[jj]
                        H[k, indices[jj]] += d * data[jj]
                    if fit_intercept:
                        H[k, last] += d
                else:
                    for jj in range(indptr[i], indptr[i + 1]):
                        G[k, indices[jj]] += c * data[jj]
                if fit_intercept:
                    G[k, last] += c

    return csr
