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

Speed (see ``benchmarks/bench_epochs.py``): a dense minibatch is copied once
into a transposed block, so that the margins of all its rows (``Z`` and
``V`` at once) and the sums back over them vectorize; the rows of the next
minibatch, their targets and SAGA memories are prefetched while the current
one is processed (the rows of a minibatch are spread over the whole matrix,
and without it every row waits on a cache miss); one-output losses keep
their per-row arithmetic in registers; CSR rows are visited one by one, both
margins in one pass and both scatters in one pass. All the ``O(K p)`` work
of an iteration (outer direction, both proximal steps, SAGA means, reset of
the accumulators) is one pass over the coefficients.
"""

import numpy as np
from numba import njit

from ..problems._kernels import (
    _HELPER_JIT,
    BLOCK_LIMIT,
    FAST_JIT,
    MULTINOMIAL,
    PREFETCH_AHEAD,
    _row_axpy,
    _row_dot,
    block_margins,
    block_scatter,
    gather_transposed,
    loss_derivative,
    loss_hessian_apply,
    prefetch,
    prefetch_csr_row,
    prefetch_dense_row,
    prefetch_rows,
    row_axpy2,
    row_dot2,
    scalar_loss_terms,
    sigmoid,
)

GROUPED_L2 = 0
SAMPLE_WEIGHTS = 1


@njit(**_HELPER_JIT)
def _clip(value, lower, upper):
    return min(max(value, lower), upper)


@njit(**FAST_JIT)
def single_loop_chunk(
    train, val, loss, fit_intercept, kind, groups, scale, spread_penalty, spread_offset,
    Z, V, x, rows, offsets, val_rows, val_offsets,
    inner_steps, outer_step, lower, upper, saga, memory,
):
    """Run ``len(offsets) - 1`` iterations of SOBA (``saga=False``) or SABA.

    Parameters
    ----------
    train, val : tuple
        ``(X, data, indices, indptr, y, sample_weight)`` of each split.
    loss : int
        Loss code.
    fit_intercept : bool
    kind, groups, scale : int, ndarray, ndarray
        The hyperparameter map: grouped strengths ``scale * exp(x[groups])``,
        or sample weights ``sigmoid(x_i)`` with the fixed strengths ``scale``.
    spread_penalty, spread_offset : float, ndarray of shape (n_outer,)
        Weight of ``(1/2) ||c - mean(c)||^2``, ``c = x - spread_offset``, in
        the outer objective (grouped strengths only; exact, added to every
        outer direction).
    Z, V : ndarray of shape (K, p + fit_intercept)
        Inner and linear-system variables, updated in place.
    x : ndarray of shape (n_outer,)
        Hyperparameters, updated in place.
    rows, offsets, val_rows, val_offsets : ndarray of int64
        Iteration ``t`` uses ``rows[offsets[t]:offsets[t + 1]]`` and the same
        for the validation rows.
    inner_steps : ndarray of shape (p + fit_intercept,)
        Inner and linear-system step of every column of ``Z`` and ``V``.
    outer_step, lower, upper : ndarray of shape (n_outer,)
        Step of every coordinate of ``x``, and the box it stays in.
    saga : bool
        Whether to use the SAGA memories (SABA) or plain estimates (SOBA).
    memory : tuple
        ``(grad, hvp, val_grad, cross, grad_mean, hvp_mean, val_grad_mean)``:
        per-row memories of shapes (n, K), (n, K), (m, K), (n,) and their
        means over the rows times ``[d_i, 1]``, of shape (K, p + fi). Ignored
        (may be empty) when ``saga`` is False.
    """
    X, data, indices, indptr, y, weight = train
    Xv, datav, indicesv, indptrv, yv, weightv = val
    mem_grad, mem_hvp, mem_val, mem_cross, grad_mean, hvp_mean, val_mean = memory
    K, n_cols = Z.shape
    n_features = n_cols - fit_intercept
    n_train, n_val = y.shape[0], yv.shape[0]
    # Data terms of an iteration, summed over its rows; reset to zero by the
    # pass over the coefficients that consumes them.
    d_grad = np.zeros((K, n_cols))
    d_hvp = np.zeros((K, n_cols))
    d_val = np.zeros((K, n_cols))
    r = np.zeros(n_cols)  # L2 strength of every column (0: the intercept)
    shrink = np.zeros(n_cols) + 1.0  # 1 / (1 + inner_steps r): the proximal step
    zv = np.zeros(n_features)
    u = np.empty(K)
    q = np.empty(K)
    g = np.empty(K)
    hq = np.empty(K)
    dx = np.zeros(x.shape[0])
    weighted = kind == SAMPLE_WEIGHTS
    lazy = weighted and saga
    scalar = K == 1 and loss != MULTINOMIAL
    if weighted:
        for j in range(n_features):
            r[j] = scale[j]
            shrink[j] = 1.0 / (1.0 + inner_steps[j] * scale[j])
    # Lazy outer updates (sample weights with SAGA): x[i] is current up to
    # iteration last[i]; after that it moves by a constant push per iteration.
    last = np.zeros(x.shape[0], dtype=np.int64)
    n_iter = offsets.shape[0] - 1
    n_visits, n_val_visits = offsets[n_iter], val_offsets[n_iter]
    # Dense rows go through a transposed block per minibatch (see
    # problems._kernels); CSR rows are visited one by one.
    max_batch = 1
    for t in range(n_iter):
        max_batch = max(max_batch, offsets[t + 1] - offsets[t],
                        val_offsets[t + 1] - val_offsets[t])
    csr, val_csr = indptr.shape[0] > 0, indptrv.shape[0] > 0
    blocked = not csr and n_features * max_batch <= BLOCK_LIMIT
    val_blocked = not val_csr and n_features * max_batch <= BLOCK_LIMIT
    n_block = max_batch if blocked or val_blocked else 0
    XT = np.empty((n_features, n_block))
    U = np.empty((K, n_block))
    Q = np.empty((K, n_block))
    CG = np.empty((K, n_block))
    CH = np.empty((K, n_block))
    # The first rows of the chunk; later, each batch asks for the next one.
    prefetch_rows(X, data, indices, indptr, rows, offsets[1])
    prefetch_rows(Xv, datav, indicesv, indptrv, val_rows, val_offsets[1])
    for t in range(n_iter):
        start, stop = offsets[t], offsets[t + 1]
        val_start, val_stop = val_offsets[t], val_offsets[t + 1]
        batch = stop - start
        val_batch = val_stop - val_start
        if blocked:
            gather_transposed(X, rows, start, stop, XT)
            block_margins(XT, batch, Z, fit_intercept, U)
            block_margins(XT, batch, V, fit_intercept, Q)
        for b in range(batch):
            # Rows ahead: the same place in the next batch (blocked), or a
            # few rows ahead.
            ahead = stop + b if blocked else start + b + PREFETCH_AHEAD
            if ahead < n_visits:
                i = rows[ahead]
                if csr:
                    prefetch_csr_row(data, indices, indptr, i)
                else:
                    prefetch_dense_row(X, i)
                prefetch(y, i)
                prefetch(weight, i)
                if saga:
                    prefetch(mem_grad, i * K)
                    prefetch(mem_hvp, i * K)
            i = rows[start + b]
            if lazy:
                x[i] = _clip(x[i] - outer_step[i] * (t - last[i]) * mem_cross[i] / n_train,
                             lower[i], upper[i])
            s = weight[i]
            if weighted:
                sw = sigmoid(x[i])
                s *= sw
            if blocked:
                for k in range(K):
                    u[k] = U[k, b]
                    q[k] = Q[k, b]
            else:
                row_dot2(X, data, indices, indptr, i, Z, V, fit_intercept, u, q)
            if scalar:  # one output: the same arithmetic in registers
                g0, h0 = scalar_loss_terms(loss, y[i], u[0], q[0])
                c = g0 * q[0]
            else:
                loss_derivative(loss, y[i], u, g)
                loss_hessian_apply(loss, y[i], g, q, hq)
                c = 0.0
                for k in range(K):
                    c += g[k] * q[k]
            if weighted:
                c *= weight[i] * sw * (1.0 - sw)
                push = c / batch
                if saga:
                    push = (c - mem_cross[i]) / batch + mem_cross[i] / n_train
                    mem_cross[i] = c
                    last[i] = t + 1
                dx[i] = push  # read below, after the inner updates
            if scalar:
                g0 *= s
                h0 *= s
                if saga:
                    new_g, new_h = g0, h0
                    g0 -= mem_grad[i, 0]
                    h0 -= mem_hvp[i, 0]
                    mem_grad[i, 0] = new_g
                    mem_hvp[i, 0] = new_h
                g[0] = g0
                hq[0] = h0
            else:
                for k in range(K):
                    g[k] *= s
                    hq[k] *= s
                    if saga:
                        new_g, new_h = g[k], hq[k]
                        g[k] -= mem_grad[i, k]
                        hq[k] -= mem_hvp[i, k]
                        mem_grad[i, k] = new_g
                        mem_hvp[i, k] = new_h
            if blocked:
                for k in range(K):
                    CG[k, b] = g[k]
                    CH[k, b] = hq[k]
            else:
                row_axpy2(X, data, indices, indptr, i, g, d_grad, hq, d_hvp, fit_intercept)
        if blocked:
            block_scatter(XT, batch, CG, fit_intercept, d_grad)
            block_scatter(XT, batch, CH, fit_intercept, d_hvp)

        if val_blocked:
            gather_transposed(Xv, val_rows, val_start, val_stop, XT)
            block_margins(XT, val_batch, Z, fit_intercept, U)
        for b in range(val_batch):
            ahead = val_stop + b if val_blocked else val_start + b + PREFETCH_AHEAD
            if ahead < n_val_visits:
                j = val_rows[ahead]
                if val_csr:
                    prefetch_csr_row(datav, indicesv, indptrv, j)
                else:
                    prefetch_dense_row(Xv, j)
                prefetch(yv, j)
                prefetch(weightv, j)
                if saga:
                    prefetch(mem_val, j * K)
            j = val_rows[val_start + b]
            if val_blocked:
                for k in range(K):
                    u[k] = U[k, b]
            else:
                _row_dot(Xv, datav, indicesv, indptrv, j, Z, fit_intercept, u)
            if scalar:
                g0, _ = scalar_loss_terms(loss, yv[j], u[0], 0.0)
                g0 *= weightv[j]
                if saga:
                    new_g = g0
                    g0 -= mem_val[j, 0]
                    mem_val[j, 0] = new_g
                g[0] = g0
            else:
                loss_derivative(loss, yv[j], u, g)
                for k in range(K):
                    g[k] *= weightv[j]
                if saga:
                    for k in range(K):
                        new_g = g[k]
                        g[k] -= mem_val[j, k]
                        mem_val[j, k] = new_g
            if val_blocked:
                for k in range(K):
                    CG[k, b] = g[k]
            else:
                _row_axpy(Xv, datav, indicesv, indptrv, j, g, fit_intercept, d_val)
        if val_blocked:
            block_scatter(XT, val_batch, CG, fit_intercept, d_val)

        # Strengths at the current x (sample weights: fixed, set above).
        if not weighted:
            for j in range(n_features):
                r[j] = scale[j] * np.exp(x[groups[j]])
                shrink[j] = 1.0 / (1.0 + inner_steps[j] * r[j])
                zv[j] = 0.0
        # One pass over the coefficients: outer direction of the L2 maps
        # (exact, at the current Z and V), both proximal steps, the SAGA
        # means, and the reset of the accumulators.
        inv_batch, inv_val_batch = 1.0 / batch, 1.0 / val_batch
        inv_train, inv_val = 1.0 / n_train, 1.0 / n_val
        for k in range(K):
            if not weighted:
                for j in range(n_features):
                    zv[j] += Z[k, j] * V[k, j]
            if saga:
                for j in range(n_cols):
                    dz = d_grad[k, j] * inv_batch + grad_mean[k, j]
                    dv = (d_hvp[k, j] * inv_batch + d_val[k, j] * inv_val_batch
                          + (hvp_mean[k, j] + val_mean[k, j]))
                    Z[k, j] = (Z[k, j] - inner_steps[j] * dz) * shrink[j]
                    V[k, j] = (V[k, j] - inner_steps[j] * dv) * shrink[j]
                    grad_mean[k, j] += d_grad[k, j] * inv_train
                    hvp_mean[k, j] += d_hvp[k, j] * inv_train
                    val_mean[k, j] += d_val[k, j] * inv_val
                    d_grad[k, j] = 0.0
                    d_hvp[k, j] = 0.0
                    d_val[k, j] = 0.0
            else:
                for j in range(n_cols):
                    dz = d_grad[k, j] * inv_batch
                    dv = d_hvp[k, j] * inv_batch + d_val[k, j] * inv_val_batch
                    Z[k, j] = (Z[k, j] - inner_steps[j] * dz) * shrink[j]
                    V[k, j] = (V[k, j] - inner_steps[j] * dv) * shrink[j]
                    d_grad[k, j] = 0.0
                    d_hvp[k, j] = 0.0
                    d_val[k, j] = 0.0

        # Outer step.
        if weighted:
            for tt in range(start, stop):
                i = rows[tt]
                x[i] = _clip(x[i] - outer_step[i] * dx[i], lower[i], upper[i])
        else:
            for h in range(x.shape[0]):
                dx[h] = 0.0
            for j in range(n_features):
                dx[groups[j]] += r[j] * zv[j]
            if spread_penalty > 0.0:
                centre = 0.0  # a loop: x.mean() adds most of a second to the compile
                for h in range(x.shape[0]):
                    centre += (x[h] - spread_offset[h]) / x.shape[0]
                for h in range(x.shape[0]):
                    dx[h] += spread_penalty * (x[h] - spread_offset[h] - centre)
            for h in range(x.shape[0]):
                x[h] = _clip(x[h] - outer_step[h] * dx[h], lower[h], upper[h])
    if lazy:
        for i in range(x.shape[0]):
            x[i] = _clip(x[i] - outer_step[i] * (n_iter - last[i]) * mem_cross[i] / n_train,
                         lower[i], upper[i])
