"""Minibatches of row indices, drawn from a seeded NumPy generator."""

import numpy as np
from sklearn.utils import check_random_state


def check_generator(random_state):
    """Return a ``numpy.random.Generator`` from an int, RandomState, Generator or None."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return np.random.default_rng(seed)


class BatchStream:
    """An endless stream of minibatches over ``n`` rows.

    Each pass over the rows is a fresh permutation cut into consecutive
    batches of ``batch_size`` (the last one shorter), so that every row is
    seen once per pass and every batch is weighted by its true size.

    Parameters
    ----------
    n : int
        Number of rows.
    batch_size : int
        Rows per batch (at most ``n``).
    rng : numpy.random.Generator
        Source of the permutations.
    """

    def __init__(self, n, batch_size, rng):
        self.n = n
        self.batch_size = min(int(batch_size), n)
        self.rng = rng
        self._perm = None
        self._pos = self.n  # the first call draws a permutation

    def next(self):
        """Return the next batch as an int64 array."""
        if self._pos >= self.n:
            self._perm = self.rng.permutation(self.n).astype(np.int64)
            self._pos = 0
        batch = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += len(batch)
        return batch

    def take(self, n_batches):
        """Return ``n_batches`` batches as flat ``(indices, offsets)`` arrays.

        Batch ``t`` is ``indices[offsets[t]:offsets[t + 1]]``: the layout the
        Numba epoch kernels take. The same batches as ``n_batches`` calls of
        :meth:`next`, cut from the permutations without a Python loop per batch.
        """
        pieces, sizes = [], []
        remaining = n_batches
        while remaining > 0:
            if self._pos >= self.n:
                self._perm = self.rng.permutation(self.n).astype(np.int64)
                self._pos = 0
            starts = np.arange(self._pos, self.n, self.batch_size)[:remaining]
            ends = np.minimum(starts + self.batch_size, self.n)
            pieces.append(self._perm[self._pos:ends[-1]])
            sizes.append(ends - starts)
            self._pos = int(ends[-1])
            remaining -= len(starts)
        offsets = np.zeros(n_batches + 1, dtype=np.int64)
        if n_batches > 0:
            np.cumsum(np.concatenate(sizes), out=offsets[1:])
            return np.concatenate(pieces), offsets
        return np.zeros(0, dtype=np.int64), offsets

    def batches_per_pass(self):
        """Number of batches in one pass over the rows."""
        return -(-self.n // self.batch_size)
