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

Speed (see ``benchmarks/bench_epochs.py``): the rows of a minibatch go
through the operations of ``problems._batches`` (both margins of a row in one
pass along it, both sums in one pass over four rows at a time); the rows
ahead are prefetched by the margins, one per row, and the targets and SAGA
memories of the next minibatch while the current one is processed (the rows
of a minibatch are spread over the whole matrix, and without it every row
waits on a cache miss); the loss terms of the one-output losses are one
vectorized loop over the minibatch. All the ``O(K p)`` work of an iteration
(outer direction, both proximal steps, SAGA means, reset of the
accumulators) is one pass over the coefficients.

Compile time (a first fit compiles one kernel and the operations it calls;
see ``benchmarks/bench_epochs.py``): there is one kernel per solver (SOBA or
SABA), kind of hyperparameters (strengths or sample weights) and width of
the dense rows (margins one row or four rows at a time), made from one
source whose branches on these constants Numba prunes before typing; each
is compiled for the kinds of design (dense or CSR) and of targets
(float64 for the one-output losses, int64 class indices for the multinomial
loss) it meets, and the code of the other kinds is not in it (the typed
operations of ``problems._batches`` and :func:`batch_loss_terms`). The work
arrays are allocated in Python, and the kernel uses no ``min`` or ``max``
of integers: each NumPy function or builtin a kernel uses is compiled on its
own for a first fit, about a tenth of a second each.
"""

import numpy as np
from numba import njit, types

from ..problems._batches import (
    batch_margins,
    batch_margins_four_rows,
    batch_scatter,
    typed_operation,
)
from ..problems._exp import exp
from ..problems._jit import FAST_JIT, INLINE_JIT
from ..problems._kernels import (
    FOUR_ROW_MARGINS,
    loss_derivative,
    loss_hessian_apply,
    prefetch_sample,
    scalar_loss_terms,
    sigmoid,
)

GROUPED_L2 = 0
SAMPLE_WEIGHTS = 1


@njit(**INLINE_JIT)
def _clip(value, lower, upper):
    value = lower if value < lower else value
    return upper if value > upper else value


def _one_output_loss_terms(loss, y, rows, start, stop, U, Q, targets, cross, work):
    batch = stop - start
    for b in range(batch):
        targets[b] = y[rows[start + b]]
    for b in range(batch):
        g, h = scalar_loss_terms(loss, targets[b], U[0, b], Q[0, b])
        cross[b] = g * Q[0, b]
        U[0, b] = g
        Q[0, b] = h


def _multinomial_loss_terms(loss, y, rows, start, stop, U, Q, targets, cross, work):
    u, q, g, hq = work
    for b in range(stop - start):
        i = rows[start + b]
        for k in range(U.shape[0]):
            u[k] = U[k, b]
            q[k] = Q[k, b]
        loss_derivative(loss, y[i], u, g)
        loss_hessian_apply(loss, y[i], g, q, hq)
        c = 0.0
        for k in range(U.shape[0]):
            c += g[k] * q[k]
            U[k, b] = g[k]
            Q[k, b] = hq[k]
        cross[b] = c


def _float_targets(y):
    """Whether ``y`` (an array, or its Numba type) holds the float targets of a one-output loss.

    Integer targets are the class indices of the multinomial loss.
    """
    return isinstance(y.dtype, types.Float) if isinstance(y, types.Array) else y.dtype.kind == "f"


def _by_targets(loss, y, *args):
    return _one_output_loss_terms if _float_targets(y) else _multinomial_loss_terms


@typed_operation(_by_targets)
def batch_loss_terms(loss, y, rows, start, stop, U, Q, targets, cross, work):
    """Turn the margins of the rows ``rows[start:stop]`` into their loss derivatives.

    ``U[:, b]`` and ``Q[:, b]`` hold the margins ``u`` and ``q`` of the row
    ``i = rows[start + b]`` with ``Z`` and ``V``; they are replaced by
    ``l'(u)`` and ``l''(u) q``, and ``cross[b]`` is set to ``<l'(u), q>``.
    Float targets are those of the one-output losses: they are first
    gathered into ``targets``, so that the loop of the loss terms reads
    and writes contiguous arrays only, and vectorizes (its sigmoids use the
    exponential of ``problems._exp``). Int64 targets are class indices of
    the multinomial loss, taken one row at a time (``work``: four K-vectors).
    """


def _one_output(y, Z):
    return 1


def _outputs_of_coefficients(y, Z):
    return Z.shape[0]


@typed_operation(lambda y, Z: _one_output if _float_targets(y) else _outputs_of_coefficients)
def output_count(y, Z):
    """The number of outputs ``K``: ``Z.shape[0]``, or the constant 1 for float targets.

    With the constant, a kernel's loops over the outputs, and those of the
    batch margins and sums once inlined into it, compile for one output:
    the SABA kernel on IJCNN1 took about 12% less time (in-process
    interleaved minima, 1.43 to 1.46 ms against 1.64 ms with the count read
    from the arrays).
    """


def single_loop_chunk(
    train, val, loss, fit_intercept, kind, groups, scale, spread_penalty, spread_offset,
    Z, V, x, rows, offsets, val_rows, val_offsets,
    inner_steps, outer_step, lower, upper, saga, memory, workspace=None, python=False,
):
    """Run ``len(offsets) - 1`` iterations of SOBA (``saga=False``) or SABA.

    Parameters
    ----------
    train, val : tuple
        ``(design, y, sample_weight)`` of each split, as
        ``LinearBilevelProblem.kernel_arguments`` gives them (the design
        dense or CSR, the targets float64 or int64 class indices, the
        weights empty for unit weights).
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
    workspace : tuple or None, default=None
        Work arrays from :func:`chunk_workspace`, which successive chunks
        can share; None: allocated for this chunk.
    python : bool, default=False
        Run the kernel's Python source (as under ``NUMBA_DISABLE_JIT``).
    """
    design = train[0]
    wide = isinstance(design, np.ndarray) and Z.shape[0] * design.shape[1] >= FOUR_ROW_MARGINS
    kernel = _CHUNK_KERNELS[bool(saga), kind == SAMPLE_WEIGHTS, wide]
    if workspace is None:
        workspace = chunk_workspace(Z.shape, x.shape[0], _largest_batch(offsets, val_offsets))
    (kernel.py_func if python else kernel)(
        train, val, loss, fit_intercept, groups, scale, spread_penalty, spread_offset,
        Z, V, x, rows, offsets, val_rows, val_offsets, inner_steps, outer_step, lower, upper,
        memory, workspace,
    )


def _largest_batch(offsets, val_offsets):
    """The largest training or validation batch of a chunk (at least 1)."""
    return int(max(1, np.diff(offsets).max(initial=0), np.diff(val_offsets).max(initial=0)))


def chunk_workspace(coef_shape, n_outer, max_batch):
    """The work arrays of the chunk kernels, in the order they unpack them.

    Allocated in Python (each ``np.zeros`` in a kernel adds to its compile
    time) and shared by the chunks of an epoch: a kernel leaves them ready
    for the next chunk. ``max_batch``: the largest batch of either split.
    """
    K, n_cols = coef_shape
    return (
        np.zeros((K, n_cols)), np.zeros((K, n_cols)), np.zeros((K, n_cols)),
        np.zeros(n_cols), np.zeros(n_cols), np.zeros(n_cols), np.zeros(n_outer),
        np.zeros(n_outer), np.zeros(n_outer),
        tuple(np.zeros(K) for _ in range(4)),
        *(np.zeros((K, max_batch)) for _ in range(4)),
        np.zeros(max_batch), np.zeros(max_batch),
    )


def _chunk_kernel(saga, weighted, wide):
    """The chunk kernel of SABA (``saga``) or SOBA, for sample weights or strengths.

    ``saga`` and ``weighted`` are constants of the closure: Numba prunes the
    branches on them before typing, so each kernel holds only its own code
    (one kernel branching on both at run time took about a third longer to
    compile). ``wide``: dense margins four rows at a time
    (``problems._kernels.FOUR_ROW_MARGINS``). Compiled on its first call.
    """
    margins = batch_margins_four_rows if wide else batch_margins

    @njit(**FAST_JIT)
    def chunk(
        train, val, loss, fit_intercept, groups, scale, spread_penalty, spread_offset,
        Z, V, x, rows, offsets, val_rows, val_offsets, inner_steps, outer_step, lower, upper,
        memory, workspace,
    ):
        design, y, weight = train
        val_design, yv, weightv = val
        mem_grad, mem_hvp, mem_val, mem_cross, grad_mean, hvp_mean, val_mean = memory
        # d_*: data terms of an iteration, summed over its rows, reset to zero
        # by the pass over the coefficients that consumes them; r: L2 strength
        # of every column (0: the intercept); shrink: 1 / (1 + step r), the
        # proximal step; zv: Z * V summed over the outputs; last: lazy outer
        # updates (sample weights with SAGA), x[i] is current up to iteration
        # last[i] (a float64 count), after that it moves by a constant push
        # per iteration; exp_x: exp(x) (strengths); U, Q (Uv, Qv): a
        # training (validation) batch's margins, then loss terms, with their
        # targets and cross terms in targets and cross (Qv stays zero:
        # validation rows need l' only).
        (d_grad, d_hvp, d_val, r, shrink, zv, dx, last, exp_x, work, U, Q, Uv, Qv, targets,
         cross) = workspace
        K, n_cols = output_count(y, Z), Z.shape[1]
        n_features = n_cols - fit_intercept
        n_train, n_val = y.shape[0], yv.shape[0]
        train_weights, val_weights = weight.shape[0] > 0, weightv.shape[0] > 0
        for j in range(n_cols):
            shrink[j] = 1.0
        for h in range(x.shape[0]):
            last[h] = 0.0
        if weighted:
            for j in range(n_features):
                r[j] = scale[j]
                shrink[j] = 1.0 / (1.0 + inner_steps[j] * scale[j])
        n_iter = offsets.shape[0] - 1
        n_visits, n_val_visits = offsets[n_iter], val_offsets[n_iter]
        for t in range(n_iter):
            start, stop = offsets[t], offsets[t + 1]
            val_start, val_stop = val_offsets[t], val_offsets[t + 1]
            batch = stop - start
            val_batch = val_stop - val_start
            margins(design, rows, start, stop, fit_intercept, Z, U, V, Q, True, K)
            batch_loss_terms(loss, y, rows, start, stop, U, Q, targets, cross, work)
            for b in range(batch):
                # Each row asks for the target and memories of the row at
                # its place in the next batch (batch_margins prefetches the
                # rows' values; not for the first batch: prefetching it
                # before the loop added about half a second to the compile
                # time).
                ahead = start + b + batch
                if ahead < n_visits:
                    prefetch_sample(y, weight, mem_grad, mem_hvp, rows[ahead])
                i = rows[start + b]
                row_weight = weight[i] if train_weights else 1.0
                s = row_weight
                if weighted:
                    if saga:
                        x[i] = _clip(x[i] - outer_step[i] * (t - last[i]) * mem_cross[i]
                                     / n_train, lower[i], upper[i])
                    sw = sigmoid(x[i])
                    s *= sw
                # l'(u) and l''(u) q (from batch_loss_terms), weighted, minus
                # the SAGA memories.
                c = cross[b]
                for k in range(K):
                    g, h = s * U[k, b], s * Q[k, b]
                    if saga:
                        U[k, b], Q[k, b] = g - mem_grad[i, k], h - mem_hvp[i, k]
                        mem_grad[i, k], mem_hvp[i, k] = g, h
                    else:
                        U[k, b], Q[k, b] = g, h
                if weighted:
                    c *= row_weight * sw * (1.0 - sw)
                    if saga:
                        dx[i] = (c - mem_cross[i]) / batch + mem_cross[i] / n_train
                        mem_cross[i] = c
                        last[i] = t + 1
                    else:
                        dx[i] = c / batch
            batch_scatter(design, rows, start, stop, fit_intercept, U, d_grad, Q, d_hvp, True,
                          K)

            margins(val_design, val_rows, val_start, val_stop, fit_intercept, Z, Uv, Z, Uv,
                    False, K)
            batch_loss_terms(loss, yv, val_rows, val_start, val_stop, Uv, Qv, targets, cross, work)
            for b in range(val_batch):
                ahead = val_start + b + val_batch
                if ahead < n_val_visits:
                    prefetch_sample(yv, weightv, mem_val, mem_val, val_rows[ahead])
                j = val_rows[val_start + b]
                val_weight = weightv[j] if val_weights else 1.0
                for k in range(K):
                    g = val_weight * Uv[k, b]
                    if saga:
                        Uv[k, b] = g - mem_val[j, k]
                        mem_val[j, k] = g
                    else:
                        Uv[k, b] = g
            batch_scatter(val_design, val_rows, val_start, val_stop, fit_intercept, Uv, d_val,
                          Uv, d_val, False, K)

            # Strengths at the current x (sample weights: fixed, set above),
            # from one exp per hyperparameter in a loop that vectorizes (the
            # exp of x[groups[j]] in the loop over the features did not).
            if not weighted:
                for h in range(x.shape[0]):
                    exp_x[h] = exp(x[h])
                    dx[h] = 0.0
                for j in range(n_features):
                    r[j] = scale[j] * exp_x[groups[j]]
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
                for j in range(n_cols):
                    dz = d_grad[k, j] * inv_batch
                    dv = d_hvp[k, j] * inv_batch + d_val[k, j] * inv_val_batch
                    if saga:
                        dz += grad_mean[k, j]
                        dv += hvp_mean[k, j] + val_mean[k, j]
                        grad_mean[k, j] += d_grad[k, j] * inv_train
                        hvp_mean[k, j] += d_hvp[k, j] * inv_train
                        val_mean[k, j] += d_val[k, j] * inv_val
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
        if weighted and saga:
            for i in range(x.shape[0]):
                x[i] = _clip(x[i] - outer_step[i] * (n_iter - last[i]) * mem_cross[i] / n_train,
                             lower[i], upper[i])

    return chunk


#: The kernels of SOBA and SABA, by ``(saga, weighted, wide)``; each is
#: compiled the first time it runs.
_CHUNK_KERNELS = {(saga, weighted, wide): _chunk_kernel(saga, weighted, wide)
                  for saga in (False, True) for weighted in (False, True)
                  for wide in (False, True)}
