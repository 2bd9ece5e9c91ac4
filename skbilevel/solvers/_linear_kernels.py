"""Numba epochs of the single-loop solvers (SOBA, SABA) on linear models.

One kernel runs a chunk of iterations of SOBA, or of SABA when ``saga`` is
True, on a :class:`~skbilevel.problems.LinearBilevelProblem` given as arrays
(see ``LinearBilevelProblem.kernel_arguments``). Per iteration, the margins
of each sampled row are computed once and shared by the three directions.

SAGA memories hold per-sample scalars (K-vectors for the multinomial loss):
``l'`` and ``l'' <d_i, v>`` of every training row, ``l'`` of every validation
row, and, for per-sample weights, the cross-derivative term of every
training row; memory is O(n + m), never O(n p). The L2 part of the inner
objective is exact and taken as a proximal step. For per-sample weights the
outer update touches only the sampled coordinates: the dense SAGA mean of the
cross-derivative pushes every other coordinate by a constant until its row is
sampled again, and is applied lazily then (or at the end of the chunk).
"""

import numpy as np
from numba import njit

from ..problems._kernels import (
    _row_axpy,
    _row_dot,
    loss_derivative,
    loss_hessian_apply,
    sigmoid,
)

GROUPED_L2 = 0
SAMPLE_WEIGHTS = 1


@njit(cache=True, nogil=True)
def _strengths(kind, groups, l2, x, out):
    """Write the L2 strength of every feature into ``out``."""
    for j in range(out.shape[0]):
        out[j] = np.exp(x[groups[j]]) if kind == GROUPED_L2 else l2


@njit(cache=True, nogil=True)
def _prox_update(W, D, r, step, n_features):
    """``W <- prox(W - step D)``: the L2 part taken exactly on the features."""
    for k in range(W.shape[0]):
        for j in range(W.shape[1]):
            w = W[k, j] - step * D[k, j]
            W[k, j] = w / (1.0 + step * r[j]) if j < n_features else w


@njit(cache=True, nogil=True)
def _clip(value, lower, upper):
    return min(max(value, lower), upper)


@njit(cache=True, nogil=True)
def single_loop_chunk(
    train, val, loss, fit_intercept, kind, groups, l2,
    Z, V, x, rows, offsets, val_rows, val_offsets,
    inner_step, outer_step, lower, upper, saga, memory,
):
    """Run ``len(offsets) - 1`` iterations of SOBA (``saga=False``) or SABA.

    Parameters
    ----------
    train, val : tuple
        ``(X, data, indices, indptr, y, sample_weight)`` of each split.
    loss : int
        Loss code.
    fit_intercept : bool
    kind, groups, l2 : int, ndarray, float
        The hyperparameter map: grouped strengths ``exp(x[groups])``, or
        sample weights ``sigmoid(x_i)`` with the fixed strength ``l2``.
    Z, V : ndarray of shape (K, p + fit_intercept)
        Inner and linear-system variables, updated in place.
    x : ndarray of shape (n_outer,)
        Hyperparameters, updated in place.
    rows, offsets, val_rows, val_offsets : ndarray of int64
        Iteration ``t`` uses ``rows[offsets[t]:offsets[t + 1]]`` and the same
        for the validation rows.
    inner_step, outer_step : float
    lower, upper : float
        Box of ``x``.
    saga : bool
        Whether to use the SAGA memories (SABA) or plain estimates (SOBA).
    memory : tuple
        ``(grad, hvp, val_grad, cross, grad_mean, hvp_mean, val_grad_mean)``:
        per-row memories of shapes (n, K), (n, K), (m, K), (n,) and their
        means over the rows times ``[d_i, 1]``, of shape (K, p + fi). Ignored
        (may be empty) when ``saga`` is False.
    """
    X, data, indices, indptr, y, weight = train
    Xv, datav, indicesv, indptrv, yv, _ = val
    mem_grad, mem_hvp, mem_val, mem_cross, grad_mean, hvp_mean, val_mean = memory
    K, n_cols = Z.shape
    n_features = n_cols - fit_intercept
    n_train, n_val = y.shape[0], yv.shape[0]
    r = np.empty(n_features)
    d_grad = np.empty((K, n_cols))
    d_hvp = np.empty((K, n_cols))
    d_val = np.empty((K, n_cols))
    direction = np.empty((K, n_cols))
    u = np.empty(K)
    q = np.empty(K)
    g = np.empty(K)
    hq = np.empty(K)
    dx = np.zeros(x.shape[0])
    weighted = kind == SAMPLE_WEIGHTS
    # Lazy outer updates (sample weights with SAGA): x[i] is current up to
    # iteration last[i]; after that it moves by a constant push per iteration.
    last = np.zeros(x.shape[0], dtype=np.int64)
    n_iter = offsets.shape[0] - 1
    for t in range(n_iter):
        _strengths(kind, groups, l2, x, r)
        d_grad[:] = 0.0
        d_hvp[:] = 0.0
        d_val[:] = 0.0
        batch = offsets[t + 1] - offsets[t]
        for tt in range(offsets[t], offsets[t + 1]):
            i = rows[tt]
            if weighted and saga:
                x[i] = _clip(x[i] - outer_step * (t - last[i]) * mem_cross[i] / n_train,
                             lower, upper)
            s = weight[i]
            if weighted:
                s *= sigmoid(x[i])
            _row_dot(X, data, indices, indptr, i, Z, fit_intercept, u)
            _row_dot(X, data, indices, indptr, i, V, fit_intercept, q)
            loss_derivative(loss, y[i], u, g)
            loss_hessian_apply(loss, y[i], g, q, hq)
            if weighted:
                sw = sigmoid(x[i])
                c = 0.0
                for k in range(K):
                    c += g[k] * q[k]
                c *= weight[i] * sw * (1.0 - sw)
                push = c / batch
                if saga:
                    push = (c - mem_cross[i]) / batch + mem_cross[i] / n_train
                    mem_cross[i] = c
                    last[i] = t + 1
                dx[i] = push  # read below, after the inner updates
            for k in range(K):
                g[k] *= s
                hq[k] *= s
                if saga:
                    new_g, new_h = g[k], hq[k]
                    g[k] -= mem_grad[i, k]
                    hq[k] -= mem_hvp[i, k]
                    mem_grad[i, k] = new_g
                    mem_hvp[i, k] = new_h
            _row_axpy(X, data, indices, indptr, i, g, fit_intercept, d_grad)
            _row_axpy(X, data, indices, indptr, i, hq, fit_intercept, d_hvp)
        val_batch = val_offsets[t + 1] - val_offsets[t]
        for tt in range(val_offsets[t], val_offsets[t + 1]):
            j = val_rows[tt]
            _row_dot(Xv, datav, indicesv, indptrv, j, Z, fit_intercept, u)
            loss_derivative(loss, yv[j], u, g)
            if saga:
                for k in range(K):
                    new_g = g[k]
                    g[k] -= mem_val[j, k]
                    mem_val[j, k] = new_g
            _row_axpy(Xv, datav, indicesv, indptrv, j, g, fit_intercept, d_val)

        # Outer direction of the L2 maps, exact, at the current Z and V.
        if not weighted:
            dx[:] = 0.0
            for k in range(K):
                for j in range(n_features):
                    dx[groups[j]] += r[j] * Z[k, j] * V[k, j]

        # Inner and linear-system steps.
        for k in range(K):
            for j in range(n_cols):
                direction[k, j] = d_grad[k, j] / batch
                if saga:
                    direction[k, j] += grad_mean[k, j]
        _prox_update(Z, direction, r, inner_step, n_features)
        for k in range(K):
            for j in range(n_cols):
                direction[k, j] = d_hvp[k, j] / batch + d_val[k, j] / val_batch
                if saga:
                    direction[k, j] += hvp_mean[k, j] + val_mean[k, j]
        _prox_update(V, direction, r, inner_step, n_features)
        if saga:
            for k in range(K):
                for j in range(n_cols):
                    grad_mean[k, j] += d_grad[k, j] / n_train
                    hvp_mean[k, j] += d_hvp[k, j] / n_train
                    val_mean[k, j] += d_val[k, j] / n_val

        # Outer step.
        if weighted:
            for tt in range(offsets[t], offsets[t + 1]):
                i = rows[tt]
                x[i] = _clip(x[i] - outer_step * dx[i], lower, upper)
        else:
            for h in range(x.shape[0]):
                x[h] = _clip(x[h] - outer_step * dx[h], lower, upper)
    if weighted and saga:
        for i in range(x.shape[0]):
            x[i] = _clip(x[i] - outer_step * (n_iter - last[i]) * mem_cross[i] / n_train,
                         lower, upper)
