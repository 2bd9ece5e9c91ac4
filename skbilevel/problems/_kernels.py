"""Numba kernels for the per-sample work of linear models.

Every kernel takes the design matrix as four arrays ``(X, data, indices,
indptr)``: a dense C-ordered ``X`` with empty CSR arrays, or an empty ``X``
with the CSR arrays of a sparse matrix, so that dense and sparse data share one
signature. Coefficients are a 2D array ``W`` of shape ``(K, p + fit_intercept)``
whose last column is the intercept when there is one; ``K`` is 1 for the
binary logistic and squared losses and the number of classes for the
multinomial loss.

Losses are selected by an integer code (``LOGISTIC``, ``SQUARED``,
``MULTINOMIAL``); targets are float64 (``+-1``, real values, or class
indices).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import lower_builtin, type_callable

from ._exp import exp
from ._jit import FAST_JIT, HELPER_JIT, INLINE_JIT, JIT

LOGISTIC = 0
SQUARED = 1
MULTINOMIAL = 2

#: How many rows ahead the row loops ask the memory for the next rows: the
#: rows of a minibatch are spread over the whole matrix, so without it every
#: row waits on a cache miss.
PREFETCH_AHEAD = 8

#: How many rows ahead the batch margins prefetch, along a chunk's rows
#: (which run on into the next batch): with 24 to 48, the SABA kernel on
#: IJCNN1 took 2 to 3% less time than with the row at the same place in the
#: next batch, 64 rows ahead (in-process minima, 1.25 against 1.28 ms).
MARGINS_AHEAD = 32

#: From this many coefficients per matrix (outputs times features) on, the
#: solvers' kernels take dense margins four rows at a time
#: (:func:`_dense_four_row_margins`). SABA kernel epochs, four rows against
#: one (in-process minima): MNIST hyper-cleaning (784 features, 10 outputs)
#: 68 against 87 ms; 512 features 9.4 against 13.3 ms; 32 features 1.00
#: against 1.08 ms; 22 features and 10 outputs 6.6 against 6.9 ms; but
#: IJCNN1's 22 features and one output 1.37 against 1.27 ms.
FOUR_ROW_MARGINS = 32

#: At most this many values at the start of a row are prefetched (the
#: hardware prefetcher follows a long row by itself).
_PREFETCH_SPAN = 32


# -- Software prefetch -------------------------------------------------------


def prefetch(a, offset):
    """Hint that ``a.ravel()[offset]`` will be read soon (no-op in Python).

    ``a`` must be C-contiguous. A prefetch never faults, so ``offset`` may be
    out of range; it only costs a wasted hint.
    """


@type_callable(prefetch)
def _type_prefetch(context):
    def typer(a, offset):
        if isinstance(a, types.Array) and isinstance(offset, types.Integer):
            return types.none

    return typer


@lower_builtin(prefetch, types.Array, types.Integer)
def _lower_prefetch(context, builder, signature, args):
    # Lowered in place: an overload would be a function of its own, compiled
    # (about a tenth of a second) for each kind of array it is called on.
    array = context.make_array(signature.args[0])(context, builder, args[0])
    offset = context.cast(builder, args[1], signature.args[1], types.intp)
    address = builder.gep(array.data, [offset])
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    # read, high temporal locality, data cache
    builder.call(fn, [builder.bitcast(address, i8p), i32(0), i32(3), i32(1)])
    return context.get_dummy_value()


# The dense and CSR cases are two helpers, and the caller picks one: one
# helper branching between them kept the reference counts of its four array
# arguments (atomic operations: a third of an epoch of SABA on IJCNN1).


@njit(**INLINE_JIT)
def prefetch_dense_row(X, i):
    """Prefetch the first values of row ``i`` of a dense ``X``, straight-line."""
    n_cols = X.shape[1]
    start = i * n_cols
    prefetch(X, start)
    prefetch(X, start + 8)
    prefetch(X, start + 16)
    prefetch(X, start + (n_cols if n_cols < _PREFETCH_SPAN else _PREFETCH_SPAN) - 1)


@njit(**INLINE_JIT)
def prefetch_csr_row(data, indices, indptr, i):
    """Prefetch the first values of row ``i`` of a CSR matrix, straight-line."""
    start = indptr[i]
    stop = min(indptr[i + 1], start + _PREFETCH_SPAN) - 1
    prefetch(data, start)
    prefetch(indices, start)
    prefetch(data, start + 8)
    prefetch(indices, start + 8)
    prefetch(data, stop)
    prefetch(indices, stop)


@njit(**INLINE_JIT)
def prefetch_sample(y, weight, memory, other_memory, i):
    """Prefetch the target, weight and per-row memories of sample ``i``.

    Straight-line (a branch would keep the reference counts of the arrays
    in the kernels' row loops): an empty ``weight`` (unit weights) has its
    start prefetched, and the memories (rows of shape (n, K)) are
    prefetched even when they are empty (SOBA's), as a prefetch never
    faults.
    """
    prefetch(y, i)
    prefetch(weight, i * (weight.shape[0] > 0))
    prefetch(memory, i * memory.shape[1])
    prefetch(other_memory, i * other_memory.shape[1])


@njit(**HELPER_JIT)
def prefetch_rows(X, data, indices, indptr, rows, stop):
    """Prefetch the rows ``rows[:stop]`` (dense or CSR): the first rows of a loop."""
    for t in range(min(stop, rows.shape[0])):
        if indptr.shape[0] > 0:
            prefetch_csr_row(data, indices, indptr, rows[t])
        else:
            prefetch_dense_row(X, rows[t])


@njit(**INLINE_JIT)
def log1pexp(t):
    """Return ``log(1 + exp(t))`` without overflow."""
    if t > 0.0:
        return t + np.log1p(np.exp(-t))
    return np.log1p(np.exp(t))


@njit(**INLINE_JIT)
def sigmoid(t):
    """Return ``1 / (1 + exp(-t))`` without overflow.

    Branch-free (both cases computed, one selected): where the model does
    not yet separate the classes (early in a fit, noisy labels) the sign of
    a margin is close to random from row to row, and a branch on it is
    mispredicted about half the time. With the :func:`~._exp.exp` of plain
    arithmetic, a loop of sigmoids vectorizes.
    """
    e = exp(-abs(t))
    p = 1.0 / (1.0 + e)
    return p if t >= 0.0 else e * p


@njit(**HELPER_JIT)
def _row_dot(X, data, indices, indptr, i, W, fit_intercept, out):
    """Set ``out[k]`` to the margin ``W[k] [d_i, 1]`` of row ``i``."""
    last = W.shape[1] - 1
    for k in range(W.shape[0]):
        acc = W[k, last] if fit_intercept else 0.0
        if indptr.shape[0] > 0:
            for jj in range(indptr[i], indptr[i + 1]):
                acc += data[jj] * W[k, indices[jj]]
        else:
            for j in range(X.shape[1]):
                acc += X[i, j] * W[k, j]
        out[k] = acc


@njit(**HELPER_JIT)
def _row_axpy(X, data, indices, indptr, i, coef, fit_intercept, G):
    """Add ``coef[k] [d_i, 1]`` to ``G[k]`` for every ``k``."""
    last = G.shape[1] - 1
    for k in range(G.shape[0]):
        c = coef[k]
        if indptr.shape[0] > 0:
            for jj in range(indptr[i], indptr[i + 1]):
                G[k, indices[jj]] += c * data[jj]
        else:
            for j in range(X.shape[1]):
                G[k, j] += c * X[i, j]
        if fit_intercept:
            G[k, last] += c


@njit(**HELPER_JIT)
def row_dot2(X, data, indices, indptr, i, W, V, fit_intercept, u, q):
    """Set ``u[k]`` and ``q[k]`` to ``W[k] [d_i, 1]`` and ``V[k] [d_i, 1]`` in one pass."""
    last = W.shape[1] - 1
    for k in range(W.shape[0]):
        a = W[k, last] if fit_intercept else 0.0
        b = V[k, last] if fit_intercept else 0.0
        if indptr.shape[0] > 0:
            for jj in range(indptr[i], indptr[i + 1]):
                a += data[jj] * W[k, indices[jj]]
                b += data[jj] * V[k, indices[jj]]
        else:  # X[i, j], not a row view X[i]: a view costs a reference count
            for j in range(X.shape[1]):
                a += X[i, j] * W[k, j]
                b += X[i, j] * V[k, j]
        u[k] = a
        q[k] = b


@njit(**HELPER_JIT)
def row_axpy2(X, data, indices, indptr, i, a, G, b, H, fit_intercept):
    """Add ``a[k] [d_i, 1]`` to ``G[k]`` and ``b[k] [d_i, 1]`` to ``H[k]`` in one pass."""
    last = G.shape[1] - 1
    for k in range(G.shape[0]):
        ak = a[k]
        bk = b[k]
        if indptr.shape[0] > 0:
            for jj in range(indptr[i], indptr[i + 1]):
                G[k, indices[jj]] += ak * data[jj]
                H[k, indices[jj]] += bk * data[jj]
        else:
            for j in range(X.shape[1]):
                G[k, j] += ak * X[i, j]
                H[k, j] += bk * X[i, j]
        if fit_intercept:
            G[k, last] += ak
            H[k, last] += bk


# -- Minibatches of dense rows --------------------------------------------
#
# Each row's margins are two dot products along its contiguous values, and
# the weighted sums add four rows at a time along them, while the rows of the
# next batch are prefetched. (A batch used to be copied first into a
# transposed block, features x rows, for the margins to run along the rows:
# SABA epochs ran as fast on IJCNN1 and 5 to 9% slower on MNIST, with one
# more work array and its size limit.) The two functions below are compiled
# as they are (``dense_batch_margins``, ``dense_batch_scatter``) and are the
# dense implementations of the overloads of ``_batches``. Neither calls
# another compiled function: a helper with array arguments, branches and
# calls kept reference counts (atomic operations) on its arguments. Both
# take the number of outputs ``n_outputs`` (``W.shape[0]``): a kernel that
# knows it to be 1 (``solvers._linear_kernels.output_count``) has their
# loops compiled for one output once they are inlined into it.


@njit(**INLINE_JIT)
def _block_of_four(rows, start, b, batch):
    """The block of positions ``b`` to ``b + 3`` of a batch, and their rows.

    Returns ``(s1, s2, s3, i0, i1, i2, i3)``: position ``b + s``, or the
    batch's last position past its end, and the row ``rows[start + s]`` of
    each position.
    """
    final = batch - 1
    s1 = b + 1 if b + 1 < batch else final
    s2 = b + 2 if b + 2 < batch else final
    s3 = b + 3 if b + 3 < batch else final
    return s1, s2, s3, rows[start + b], rows[start + s1], rows[start + s2], rows[start + s3]


def _dense_batch_margins(design, rows, start, stop, fit_intercept, W, U, V, Q, both,
                         n_outputs):
    """Set the margins of the rows ``rows[start:stop]`` of ``design``.

    ``U[k, b] = W[k] [d_i, 1]`` for the row ``i = rows[start + b]`` and, if
    ``both``, ``Q[k, b] = V[k] [d_i, 1]`` (otherwise ``V`` and ``Q`` are not
    touched), for the ``n_outputs`` rows ``k`` of ``W``.

    Each row prefetches the row :data:`MARGINS_AHEAD` places after it in
    ``rows`` (see ``_batches.batch_margins``).
    """
    n_features, last = design.shape[1], W.shape[1] - 1
    n_rows = rows.shape[0]
    for b in range(stop - start):
        ahead = start + b + MARGINS_AHEAD
        prefetch_dense_row(design, rows[ahead if ahead < n_rows else n_rows - 1])
        i = rows[start + b]
        for k in range(n_outputs):
            u = W[k, last] if fit_intercept else 0.0
            q = V[k, last] if fit_intercept and both else 0.0
            for j in range(n_features):
                u += design[i, j] * W[k, j]
                if both:
                    q += design[i, j] * V[k, j]
            U[k, b] = u
            if both:
                Q[k, b] = q


def _dense_four_row_margins(design, rows, start, stop, fit_intercept, W, U, V, Q, both,
                            n_outputs):
    """:func:`_dense_batch_margins`, four rows at a time.

    Like the sums of :func:`_dense_batch_scatter` (a last short block
    repeats its last row, whose margins are then written twice): each
    coefficient is loaded once per four rows, and the four dot products run
    side by side. Faster for wide rows, slower for short ones
    (:data:`FOUR_ROW_MARGINS`).
    """
    n_features, last = design.shape[1], W.shape[1] - 1
    n_rows = rows.shape[0]
    batch = stop - start
    for b in range(0, batch, 4):
        for s in range(4):
            ahead = start + b + s + MARGINS_AHEAD
            prefetch_dense_row(design, rows[ahead if ahead < n_rows else n_rows - 1])
        s1, s2, s3, i0, i1, i2, i3 = _block_of_four(rows, start, b, batch)
        for k in range(n_outputs):
            u0 = W[k, last] if fit_intercept else 0.0
            q0 = V[k, last] if fit_intercept and both else 0.0
            u1, u2, u3, q1, q2, q3 = u0, u0, u0, q0, q0, q0
            for j in range(n_features):
                w = W[k, j]
                x0, x1, x2, x3 = design[i0, j], design[i1, j], design[i2, j], design[i3, j]
                u0 += x0 * w
                u1 += x1 * w
                u2 += x2 * w
                u3 += x3 * w
                if both:
                    v = V[k, j]
                    q0 += x0 * v
                    q1 += x1 * v
                    q2 += x2 * v
                    q3 += x3 * v
            U[k, b], U[k, s1], U[k, s2], U[k, s3] = u0, u1, u2, u3
            if both:
                Q[k, b], Q[k, s1], Q[k, s2], Q[k, s3] = q0, q1, q2, q3


def _dense_batch_scatter(design, rows, start, stop, fit_intercept, C, G, D, H, both,
                         n_outputs):
    """Add the rows ``rows[start:stop]`` of ``design`` weighted by ``C`` to ``G``.

    ``G[k] += sum_b C[k, b] [d_i, 1]`` over the rows ``i = rows[start + b]``;
    if ``both``, ``H[k] += sum_b D[k, b] [d_i, 1]`` (otherwise ``D`` and ``H``
    are not touched), for the ``n_outputs`` rows ``k`` of ``G``.

    Four rows at a time (a last short block repeats its last row with weight
    0): each entry of ``G`` and ``H`` is loaded and stored once per four rows,
    not once per row. The sums of a SABA epoch's 547 batches of 64 IJCNN1
    rows, timed alone, took 0.34 to 0.52 ms instead of 0.60 to 0.73 ms.
    """
    n_features = design.shape[1]
    batch = stop - start
    for b in range(0, batch, 4):
        # Past the batch's end, its last row again, with weight 0.
        _, _, _, i0, i1, i2, i3 = _block_of_four(rows, start, b, batch)
        for k in range(n_outputs):
            c0 = C[k, b]
            c1 = C[k, b + 1] if b + 1 < batch else 0.0
            c2 = C[k, b + 2] if b + 2 < batch else 0.0
            c3 = C[k, b + 3] if b + 3 < batch else 0.0
            d0 = D[k, b] if both else 0.0
            d1 = D[k, b + 1] if both and b + 1 < batch else 0.0
            d2 = D[k, b + 2] if both and b + 2 < batch else 0.0
            d3 = D[k, b + 3] if both and b + 3 < batch else 0.0
            for j in range(n_features):
                x0, x1, x2, x3 = design[i0, j], design[i1, j], design[i2, j], design[i3, j]
                G[k, j] += (c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3)
                if both:
                    H[k, j] += (d0 * x0 + d1 * x1) + (d2 * x2 + d3 * x3)
            if fit_intercept:  # the intercept, last column
                G[k, n_features] += (c0 + c1) + (c2 + c3)
                if both:
                    H[k, n_features] += (d0 + d1) + (d2 + d3)


dense_batch_margins = njit(**FAST_JIT)(_dense_batch_margins)
dense_batch_scatter = njit(**FAST_JIT)(_dense_batch_scatter)


@njit(**HELPER_JIT)
def _largest(u):
    """Return the largest entry of a non-empty vector.

    A loop rather than ``u.max()``, which takes Numba most of a second to
    compile on a first call.
    """
    largest = u[0]
    for k in range(1, u.shape[0]):
        largest = max(largest, u[k])
    return largest


@njit(**HELPER_JIT)
def loss_value(loss, y, u):
    """Loss of one sample with target ``y`` and margins ``u``."""
    if loss == LOGISTIC:
        return log1pexp(-y * u[0])
    if loss == SQUARED:
        return 0.5 * (u[0] - y) ** 2
    u_max = _largest(u)
    total = 0.0
    for k in range(u.shape[0]):
        total += np.exp(u[k] - u_max)
    return u_max + np.log(total) - u[int(y)]


@njit(**HELPER_JIT)
def loss_derivative(loss, y, u, g):
    """Write the derivative of the loss in the margins ``u`` into ``g``."""
    if loss == LOGISTIC:
        g[0] = -y * sigmoid(-y * u[0])
    elif loss == SQUARED:
        g[0] = u[0] - y
    else:
        u_max = _largest(u)
        total = 0.0
        for k in range(u.shape[0]):
            g[k] = np.exp(u[k] - u_max)
            total += g[k]
        for k in range(u.shape[0]):
            g[k] /= total
        g[int(y)] -= 1.0


@njit(**INLINE_JIT)
def scalar_loss_terms(loss, y, u, q):
    """``l'(u)`` and ``l''(u) q`` of the one-output losses (logistic, squared).

    The same arithmetic as :func:`loss_derivative` and
    :func:`loss_hessian_apply` on scalars instead of length-1 arrays, which
    keeps the per-row work of the binary kernels in registers.
    """
    if loss == LOGISTIC:
        prob = sigmoid(-y * u)
        return -y * prob, prob * (1.0 - prob) * q
    return u - y, q


@njit(**HELPER_JIT)
def loss_hessian_apply(loss, y, g, q, out):
    """Write the loss Hessian in the margins applied to ``q`` into ``out``.

    The Hessian is recovered from the derivative ``g`` of
    :func:`loss_derivative`, so no exponential is computed twice.
    """
    if loss == LOGISTIC:
        prob = abs(g[0])  # sigmoid(-y u)
        out[0] = prob * (1.0 - prob) * q[0]
    elif loss == SQUARED:
        out[0] = q[0]
    else:
        label = int(y)
        prob_dot_q = 0.0
        for k in range(g.shape[0]):
            prob = g[k] + (1.0 if k == label else 0.0)
            out[k] = prob * q[k]
            prob_dot_q += out[k]
        for k in range(g.shape[0]):
            prob = g[k] + (1.0 if k == label else 0.0)
            out[k] -= prob * prob_dot_q


@njit(**JIT)
def batch_loss(X, data, indices, indptr, y, rows, weights, loss, W, fit_intercept):
    """Return ``sum_t weights[t] * loss(y[i], u_i)`` over the rows ``i = rows[t]``."""
    u = np.empty(W.shape[0])
    total = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        _row_dot(X, data, indices, indptr, i, W, fit_intercept, u)
        total += weights[t] * loss_value(loss, y[i], u)
    return total


@njit(**FAST_JIT)
def batch_derivatives(X, data, indices, indptr, y, rows, weights, loss, W, V,
                      fit_intercept, grad_out, hvp_out, cross_out):
    """Accumulate the data terms of the inner oracles over a set of rows.

    The margins of each row are computed once and shared by the three terms.
    A term whose output array is empty is skipped.

    Parameters
    ----------
    X, data, indices, indptr : ndarray
        The design matrix (dense, or CSR with an empty ``X``).
    y : ndarray of shape (n,)
        Targets.
    rows : ndarray of int
        The rows to visit.
    weights : ndarray of shape (len(rows),)
        Weight of each visited row in ``grad_out`` and ``hvp_out``.
    loss : int
        Loss code.
    W, V : ndarray of shape (K, p + fit_intercept)
        The point and the direction.
    fit_intercept : bool
        Whether the last column of ``W`` and ``V`` is an intercept.
    grad_out : ndarray of shape (K, p + fit_intercept) or empty
        Receives ``sum_t weights[t] * l'(u_i) [d_i, 1]``.
    hvp_out : ndarray of shape (K, p + fit_intercept) or empty
        Receives ``sum_t weights[t] * l''(u_i) V [d_i, 1] [d_i, 1]``.
    cross_out : ndarray of shape (len(rows),) or empty
        Receives ``<l'(u_i), V [d_i, 1]>`` for each visited row, unweighted.
    """
    K = W.shape[0]
    u = np.empty(K)
    g = np.empty(K)
    q = np.empty(K)
    coef = np.empty(K)
    coef2 = np.empty(K)
    want_grad = grad_out.size > 0
    want_hvp = hvp_out.size > 0
    want_cross = cross_out.size > 0
    want_v = want_hvp or want_cross
    scalar = K == 1 and loss != MULTINOMIAL
    n_rows = rows.shape[0]
    csr = indptr.shape[0] > 0
    prefetch_rows(X, data, indices, indptr, rows, PREFETCH_AHEAD)
    for t in range(n_rows):
        if t + PREFETCH_AHEAD < n_rows:
            ahead = rows[t + PREFETCH_AHEAD]
            if csr:
                prefetch_csr_row(data, indices, indptr, ahead)
            else:
                prefetch_dense_row(X, ahead)
            prefetch(y, ahead)
        i = rows[t]
        if want_v:
            row_dot2(X, data, indices, indptr, i, W, V, fit_intercept, u, q)
        else:
            _row_dot(X, data, indices, indptr, i, W, fit_intercept, u)
        if scalar:
            g0, h0 = scalar_loss_terms(loss, y[i], u[0], q[0] if want_v else 0.0)
            g[0] = g0
            coef[0] = weights[t] * g0
            coef2[0] = weights[t] * h0
        else:
            loss_derivative(loss, y[i], u, g)
            for k in range(K):
                coef[k] = weights[t] * g[k]
            if want_hvp:
                loss_hessian_apply(loss, y[i], g, q, coef2)
                for k in range(K):
                    coef2[k] *= weights[t]
        if want_cross:
            c = 0.0
            for k in range(K):
                c += g[k] * q[k]
            cross_out[t] = c
        if want_grad and want_hvp:
            row_axpy2(X, data, indices, indptr, i, coef, grad_out, coef2, hvp_out,
                      fit_intercept)
        elif want_grad:
            _row_axpy(X, data, indices, indptr, i, coef, fit_intercept, grad_out)
        elif want_hvp:
            _row_axpy(X, data, indices, indptr, i, coef2, fit_intercept, hvp_out)


@njit(**FAST_JIT)
def epoch_oracles(X, data, indices, indptr, y, rows, offsets, weights, loss, W, V,
                  fit_intercept, r, groups, grad_out, hvp_out, cross_out, terms_out):
    """The fused inner oracles of every minibatch of an epoch, in one call.

    Batch ``t`` is ``rows[offsets[t]:offsets[t + 1]]``; its oracles are
    written into the output slot ``s = t % len(grad_out)`` (one slot: each
    batch overwrites the last, as a solver consumes them; as many slots as
    batches: all are kept). For each batch, with the margins of each row
    computed once::

        grad_out[s]  = r W + sum_t weights[t] l'(u_i) [d_i, 1]
        hvp_out[s]   = r V + sum_t weights[t] l''(u_i) V [d_i, 1] [d_i, 1]
        cross_out[s, h] = sum_{j in group h} r_j sum_k W[k, j] V[k, j]
        terms_out[s, b] = <l'(u_i), V [d_i, 1]>   (the b-th row, unweighted)

    that is the L2 and data parts of ``d1 G``, ``d11 G v`` and ``d21 G v``
    (``LinearBilevelProblem.inner_oracles``; the per-row terms give the
    cross-derivative of per-sample weights).

    Parameters
    ----------
    X, data, indices, indptr, y, loss, W, V, fit_intercept
        As in :func:`batch_derivatives`.
    rows, offsets : ndarray of int64
        The batches, as flat indices and offsets.
    weights : ndarray of shape (len(rows),)
        Weight of each visited row (``w_i s_i(x) / batch size``).
    r : ndarray of shape (p + fit_intercept,)
        L2 strength of every column, 0 on the intercept.
    groups : ndarray of int64 of shape (p,)
        Hyperparameter of every feature's strength (ignored when
        ``cross_out`` has no column).
    grad_out, hvp_out : ndarray of shape (n_slots, K, p + fit_intercept)
    cross_out : ndarray of shape (n_slots, n_groups) or (n_slots, 0)
    terms_out : ndarray of shape (n_slots, max batch size) or (n_slots, 0)
    """
    K, n_cols = W.shape
    n_features = n_cols - fit_intercept
    n_slots = grad_out.shape[0]
    n_iter = offsets.shape[0] - 1
    n_visits = offsets[n_iter]
    want_terms = terms_out.shape[1] > 0
    scalar = K == 1 and loss != MULTINOMIAL
    max_batch = 1
    for t in range(n_iter):
        max_batch = max(max_batch, offsets[t + 1] - offsets[t])
    csr = indptr.shape[0] > 0
    n_block = 0 if csr else max_batch  # dense rows: margins and sums by batch
    U = np.empty((K, n_block))
    Q = np.empty((K, n_block))
    CG = np.empty((K, n_block))
    CH = np.empty((K, n_block))
    u = np.empty(K)
    q = np.empty(K)
    g = np.empty(K)
    hq = np.empty(K)
    prefetch_rows(X, data, indices, indptr, rows, offsets[1])
    for t in range(n_iter):
        s = t % n_slots
        start, stop = offsets[t], offsets[t + 1]
        batch = stop - start
        for k in range(K):
            for j in range(n_cols):
                grad_out[s, k, j] = r[j] * W[k, j]
                hvp_out[s, k, j] = r[j] * V[k, j]
        if cross_out.shape[1] > 0:
            for h in range(cross_out.shape[1]):
                cross_out[s, h] = 0.0
            for j in range(n_features):
                acc = 0.0
                for k in range(K):
                    acc += W[k, j] * V[k, j]
                cross_out[s, groups[j]] += r[j] * acc
        if not csr:
            dense_batch_margins(X, rows, start, stop, fit_intercept, W, U, V, Q, True,
                                W.shape[0])
        for b in range(batch):
            ahead = start + b + PREFETCH_AHEAD if csr else stop + b
            if ahead < n_visits:
                i = rows[ahead]
                if csr:  # dense rows: prefetched by dense_batch_margins
                    prefetch_csr_row(data, indices, indptr, i)
                prefetch(y, i)
            i = rows[start + b]
            w = weights[start + b]
            if not csr:
                for k in range(K):
                    u[k] = U[k, b]
                    q[k] = Q[k, b]
            else:
                row_dot2(X, data, indices, indptr, i, W, V, fit_intercept, u, q)
            if scalar:
                g0, h0 = scalar_loss_terms(loss, y[i], u[0], q[0])
                c = g0 * q[0]
                g[0] = w * g0
                hq[0] = w * h0
            else:
                loss_derivative(loss, y[i], u, g)
                loss_hessian_apply(loss, y[i], g, q, hq)
                c = 0.0
                for k in range(K):
                    c += g[k] * q[k]
                    g[k] *= w
                    hq[k] *= w
            if want_terms:
                terms_out[s, b] = c
            if not csr:
                for k in range(K):
                    CG[k, b] = g[k]
                    CH[k, b] = hq[k]
            else:
                row_axpy2(X, data, indices, indptr, i, g, grad_out[s], hq, hvp_out[s],
                          fit_intercept)
        if not csr:
            dense_batch_scatter(X, rows, start, stop, fit_intercept, CG, grad_out[s], CH,
                                hvp_out[s], True, W.shape[0])


@njit(**FAST_JIT)
def csr_weighted_gram(data, indices, indptr, c, n_features, fit_intercept):
    """Return ``D^T diag(c) D`` for the CSR matrix ``X`` and ``D = [X, 1]`` (or ``X``).

    One pass over the rows, ``sum_i nnz_i^2`` multiply-adds: a dense result
    without the sparse matrix product and its intermediate matrices.
    """
    n_cols = n_features + fit_intercept
    gram = np.zeros((n_cols, n_cols))
    for i in range(indptr.shape[0] - 1):
        ci = c[i]
        for a in range(indptr[i], indptr[i + 1]):
            ja, scaled = indices[a], ci * data[a]
            for b in range(indptr[i], indptr[i + 1]):
                gram[ja, indices[b]] += scaled * data[b]
            if fit_intercept:
                gram[ja, n_features] += scaled
                gram[n_features, ja] += scaled
        if fit_intercept:
            gram[n_features, n_features] += ci
    return gram


@njit(**FAST_JIT)
def csr_squared_row_norms(data, indptr):
    """Return ``||x_i||^2`` of every row of a CSR matrix, without a copy of it."""
    norms = np.zeros(indptr.shape[0] - 1)
    for i in range(norms.shape[0]):
        total = 0.0
        for a in range(indptr[i], indptr[i + 1]):
            total += data[a] * data[a]
        norms[i] = total
    return norms
