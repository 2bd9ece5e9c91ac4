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


@njit(inline="always")
def log1pexp(t):
    """Return ``log(1 + exp(t))`` without overflow."""
    if t > 0.0:
        return t + np.log1p(np.exp(-t))
    return np.log1p(np.exp(t))


@njit(inline="always")
def sigmoid(t):
    """Return ``1 / (1 + exp(-t))`` without overflow."""
    if t >= 0.0:
        return 1.0 / (1.0 + np.exp(-t))
    e = np.exp(t)
    return e / (1.0 + e)


@njit(inline="always")
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


@njit(inline="always")
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


@njit(inline="always")
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


@njit(inline="always")
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


@njit(inline="always")
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
        _row_dot(X, data, indices, indptr, i, W, fit_intercept, u)
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
    coef = np.empty(K)
    want_grad = grad_out.size > 0
    want_hvp = hvp_out.size > 0
    want_cross = cross_out.size > 0
    for t in range(rows.shape[0]):
        i = rows[t]
        _row_dot(X, data, indices, indptr, i, W, fit_intercept, u)
        loss_derivative(loss, y[i], u, g)
        if want_grad:
            for k in range(K):
                coef[k] = weights[t] * g[k]
            _row_axpy(X, data, indices, indptr, i, coef, fit_intercept, grad_out)
        if want_hvp or want_cross:
            _row_dot(X, data, indices, indptr, i, V, fit_intercept, q)
        if want_cross:
            c = 0.0
            for k in range(K):
                c += g[k] * q[k]
            cross_out[t] = c
        if want_hvp:
            loss_hessian_apply(loss, y[i], g, q, coef)
            for k in range(K):
                coef[k] *= weights[t]
            _row_axpy(X, data, indices, indptr, i, coef, fit_intercept, hvp_out)
