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
from numba import njit

LOGISTIC = 0
SQUARED = 1
MULTINOMIAL = 2

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def log1pexp(t):
    """Return ``log(1 + exp(t))`` without overflow."""
    if t > 0.0:
        return t + np.log1p(np.exp(-t))
    return np.log1p(np.exp(t))


@njit(**_JIT)
def sigmoid(t):
    """Return ``1 / (1 + exp(-t))`` without overflow."""
    if t >= 0.0:
        return 1.0 / (1.0 + np.exp(-t))
    e = np.exp(t)
    return e / (1.0 + e)


@njit(**_JIT)
def _row_dots(X, data, indices, indptr, i, W, V, with_v, fit_intercept, u, q):
    """Margins of row ``i``: ``u = W [d_i, 1]`` and, if ``with_v``, ``q = V [d_i, 1]``.

    Both products are computed in one pass over the row.
    """
    K = W.shape[0]
    last = W.shape[1] - 1
    for k in range(K):
        u[k] = W[k, last] if fit_intercept else 0.0
        if with_v:
            q[k] = V[k, last] if fit_intercept else 0.0
    if indptr.shape[0] > 0:
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            val = data[jj]
            for k in range(K):
                u[k] += val * W[k, j]
                if with_v:
                    q[k] += val * V[k, j]
    else:
        for j in range(X.shape[1]):
            val = X[i, j]
            for k in range(K):
                u[k] += val * W[k, j]
                if with_v:
                    q[k] += val * V[k, j]


@njit(**_JIT)
def _row_axpys(X, data, indices, indptr, i, a, b, with_b, fit_intercept, A, B):
    """Add ``a[k] [d_i, 1]`` to ``A[k]`` and, if ``with_b``, ``b[k] [d_i, 1]`` to ``B[k]``.

    Both updates are made in one pass over the row.
    """
    K = A.shape[0]
    if indptr.shape[0] > 0:
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            val = data[jj]
            for k in range(K):
                A[k, j] += a[k] * val
                if with_b:
                    B[k, j] += b[k] * val
    else:
        for j in range(X.shape[1]):
            val = X[i, j]
            for k in range(K):
                A[k, j] += a[k] * val
                if with_b:
                    B[k, j] += b[k] * val
    if fit_intercept:
        last = A.shape[1] - 1
        for k in range(K):
            A[k, last] += a[k]
            if with_b:
                B[k, last] += b[k]


@njit(**_JIT)
def loss_value(loss, y, u):
    """Loss of one sample with target ``y`` and margins ``u``."""
    if loss == LOGISTIC:
        return log1pexp(-y * u[0])
    if loss == SQUARED:
        return 0.5 * (u[0] - y) ** 2
    u_max = u.max()
    total = 0.0
    for k in range(u.shape[0]):
        total += np.exp(u[k] - u_max)
    return u_max + np.log(total) - u[int(y)]


@njit(**_JIT)
def loss_derivative(loss, y, u, g):
    """Write the derivative of the loss in the margins ``u`` into ``g``."""
    if loss == LOGISTIC:
        g[0] = -y * sigmoid(-y * u[0])
    elif loss == SQUARED:
        g[0] = u[0] - y
    else:
        u_max = u.max()
        total = 0.0
        for k in range(u.shape[0]):
            g[k] = np.exp(u[k] - u_max)
            total += g[k]
        for k in range(u.shape[0]):
            g[k] /= total
        g[int(y)] -= 1.0


@njit(**_JIT)
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


@njit(**_JIT)
def batch_loss(X, data, indices, indptr, y, rows, weights, loss, W, fit_intercept):
    """Return ``sum_t weights[t] * loss(y[i], u_i)`` over the rows ``i = rows[t]``."""
    u = np.empty(W.shape[0])
    total = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        _row_dots(X, data, indices, indptr, i, W, W, False, fit_intercept, u, u)
        total += weights[t] * loss_value(loss, y[i], u)
    return total


@njit(**_JIT)
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
    a = np.empty(K)
    b = np.empty(K)
    want_grad = grad_out.size > 0
    want_hvp = hvp_out.size > 0
    want_cross = cross_out.size > 0
    with_v = want_hvp or want_cross
    # The first accumulator of _row_axpys is the gradient, or the Hessian
    # product when the gradient is not wanted.
    A = grad_out if want_grad else hvp_out
    for t in range(rows.shape[0]):
        i = rows[t]
        _row_dots(X, data, indices, indptr, i, W, V, with_v, fit_intercept, u, q)
        loss_derivative(loss, y[i], u, g)
        if want_cross:
            c = 0.0
            for k in range(K):
                c += g[k] * q[k]
            cross_out[t] = c
        if want_hvp:
            loss_hessian_apply(loss, y[i], g, q, b)
            for k in range(K):
                b[k] *= weights[t]
        if want_grad:
            for k in range(K):
                a[k] = weights[t] * g[k]
        if want_grad or want_hvp:
            _row_axpys(X, data, indices, indptr, i, a if want_grad else b, b,
                       want_grad and want_hvp, fit_intercept, A, hvp_out)
