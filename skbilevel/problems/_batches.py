"""Minibatch operations on a design matrix, chosen when a kernel is typed.

A design matrix reaches the kernels that use these operations as a dense
C-ordered float64 array or as the CSR tuple ``(data, indices, indptr)``
(``DesignMatrix.kernel_design``). Each operation has one implementation per
kind. Called from Python, it picks one at run time; in a compiled kernel it
is an overload, and Numba picks one when it types the kernel
(:func:`typed_operation`): a kernel compiled for dense data holds no CSR code,
and the reverse. One kernel branching at run time between the two compiled
both, and took twice as long to compile for a first fit
(``benchmarks/bench_epochs.py``).

Rows are visited one by one (dense ones along their contiguous values: see
``_kernels._dense_batch_margins``). Margins and sums of two coefficient
matrices at once (``Z`` and ``V`` of the single-loop solvers) share one pass
over the rows.

The implementations have no branch on an array argument around a call that
can raise: such a helper keeps the reference counts of its array arguments,
atomic operations on every call once it is inlined into a row loop.
"""

import functools

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import FAST_JIT
from ._kernels import (
    MARGINS_AHEAD,
    _dense_batch_margins,
    _dense_batch_scatter,
    _dense_four_row_margins,
    prefetch_csr_row,
)


def typed_operation(pick):
    """Decorate a stub into an operation whose implementation ``pick`` chooses.

    ``pick(*args)`` returns the implementation for the arguments: NumPy
    arrays when the operation is called from Python, their Numba types when
    a kernel calling it is typed. The stub gives the signature and the
    docstring.

    The implementations are compiled into each kernel that calls them, and
    the kernels are cached, so they are not cached on their own: the dense
    ones are also compiled alone (``_kernels.dense_batch_margins`` and
    ``dense_batch_scatter``), the same Python functions, whose cache files
    they would share; a process that loaded their entry in place of the
    standalone function's crashed on its first call from Python.
    """
    def decorate(stub):
        @functools.wraps(stub)
        def operation(*args):
            return pick(*args)(*args)

        @functools.wraps(stub)
        def typing(*args):
            return pick(*args)

        overload(operation, jit_options={**FAST_JIT, "cache": False})(typing)
        return operation

    return decorate


def by_design(dense, csr):
    """The ``pick`` of :func:`typed_operation` by the kind of the first argument."""
    def pick(design, *args):
        return dense if isinstance(design, (np.ndarray, types.Array)) else csr

    return pick


# -- Margins and sums --------------------------------------------------------


def _csr_batch_margins(design, rows, start, stop, fit_intercept, W, U, V, Q, both,
                       n_outputs):
    data, indices, indptr = design
    last = W.shape[1] - 1
    n_rows = rows.shape[0]
    for b in range(stop - start):
        ahead = start + b + MARGINS_AHEAD
        prefetch_csr_row(data, indices, indptr, rows[ahead if ahead < n_rows else n_rows - 1])
        i = rows[start + b]
        for k in range(n_outputs):
            u = W[k, last] if fit_intercept else 0.0
            q = V[k, last] if fit_intercept and both else 0.0
            for jj in range(indptr[i], indptr[i + 1]):
                u += data[jj] * W[k, indices[jj]]
                if both:
                    q += data[jj] * V[k, indices[jj]]
            U[k, b] = u
            if both:
                Q[k, b] = q


@typed_operation(by_design(_dense_batch_margins, _csr_batch_margins))
def batch_margins(design, rows, start, stop, fit_intercept, W, U, V, Q, both, n_outputs):
    """Set the margins of the rows ``rows[start:stop]``.

    ``U[k, b] = W[k] [d_i, 1]`` for the row ``i = rows[start + b]``, and, if
    ``both``, ``Q[k, b] = V[k] [d_i, 1]`` (otherwise ``V`` and ``Q`` are not
    touched), for ``k < n_outputs``, the number of rows of ``W``.

    While it reads row ``rows[start + b]``, it prefetches row ``rows[start +
    b + MARGINS_AHEAD]`` (past the end of ``rows``, its last row): when
    ``rows`` holds a chunk's batches back to back, the last rows of a batch
    prefetch the first ones of the next. The rows of a batch are spread
    over the whole matrix. Prefetched all at once from a short loop, many
    were still on their way when read (a third of a SABA epoch on IJCNN1
    waited on them); one prefetch per row of the margins' loop made the
    epoch 13% faster (in-process interleaved minima: 1.28 ms against 1.47
    ms).
    """


@typed_operation(by_design(_dense_four_row_margins, _csr_batch_margins))
def batch_margins_four_rows(design, rows, start, stop, fit_intercept, W, U, V, Q, both,
                            n_outputs):
    """:func:`batch_margins`, dense rows four at a time (CSR rows one by one).

    For wide dense rows (``_kernels.FOUR_ROW_MARGINS``): a kernel calls one
    or the other, so that it compiles one loop of margins, not both (both
    behind a test of the width made a first fit's compilation about half a
    second longer).
    """


def _csr_batch_scatter(design, rows, start, stop, fit_intercept, C, G, D, H, both,
                       n_outputs):
    data, indices, indptr = design
    last = G.shape[1] - 1
    for b in range(stop - start):
        i = rows[start + b]
        for k in range(n_outputs):
            c, d = C[k, b], D[k, b]
            for jj in range(indptr[i], indptr[i + 1]):
                G[k, indices[jj]] += c * data[jj]
                if both:
                    H[k, indices[jj]] += d * data[jj]
            if fit_intercept:
                G[k, last] += c
                if both:
                    H[k, last] += d


@typed_operation(by_design(_dense_batch_scatter, _csr_batch_scatter))
def batch_scatter(design, rows, start, stop, fit_intercept, C, G, D, H, both, n_outputs):
    """Add the rows ``rows[start:stop]`` weighted by ``C`` to ``G``.

    ``G[k] += sum_b C[k, b] [d_i, 1]`` over the rows ``i = rows[start + b]``,
    and, if ``both``, ``H[k] += sum_b D[k, b] [d_i, 1]`` (otherwise ``H`` is
    not touched), for ``k < n_outputs``, the number of rows of ``G``.
    """
