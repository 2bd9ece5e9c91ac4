"""Design matrices as the flat arrays the Numba kernels take."""

import numpy as np
import scipy.sparse as sp

from ._kernels import csr_squared_row_norms, csr_weighted_gram

_EMPTY_DENSE = np.empty((0, 0))
_EMPTY_FLOAT = np.empty(0)
#: CSR index arrays as the kernels take them: scipy's own int32, so that CSR
#: input is not copied (and dense data passes empty arrays of the same type,
#: so one compiled kernel serves both); int64 only from 2**31 non-zeros on.
_INDEX = np.int32
_EMPTY_INDEX = np.empty(0, dtype=_INDEX)
#: Non-zeros per pass of the column reductions of sparse data (bounded
#: temporaries).
_CHUNK = 1 << 20


class DesignMatrix:
    """A dense or CSR matrix converted once to the kernels' layout.

    Dense input (C- or F-ordered, any float dtype) becomes C-ordered float64;
    sparse input must be CSR (or CSC, COO, which are converted) and is never
    densified.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The data.
    name : str
        Name of the matrix in error messages.

    Attributes
    ----------
    arrays : tuple of ndarray
        ``(X, data, indices, indptr)``: the first four arguments of the
        kernels of ``_kernels``.
    kernel_design : ndarray or tuple of ndarray
        ``X`` itself, or the CSR tuple ``(data, indices, indptr)``: the
        design as the kernels typed on its kind take it (``_batches``).
    shape : tuple of int
        ``(n_samples, n_features)``.
    """

    def __init__(self, X, name="X"):
        if sp.issparse(X):
            X = _check_sparse(X, name)
            _check_finite(X.data, name)
            self.arrays = (
                _EMPTY_DENSE,
                X.data,
                *_index_arrays(X),
            )
            self.kernel_design = self.arrays[1:]
        else:
            X = _check_dense(X, name)
            self.arrays = (X, _EMPTY_FLOAT, _EMPTY_INDEX, _EMPTY_INDEX)
            self.kernel_design = X
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{name} is empty: its shape is {X.shape}.")
        self.shape = X.shape
        self.sparse = sp.issparse(X)
        self._matrix = X

    def tocsr(self):
        """Return the data as a CSR matrix (dense data is converted)."""
        return self._matrix.tocsr() if self.sparse else sp.csr_matrix(self._matrix)

    def margins(self, Z, fit_intercept):
        """Return ``[X, 1] Z^T`` of shape (n_samples, K) for coefficients ``Z``."""
        n_features = self.shape[1]
        U = np.asarray(self._matrix @ Z[:, :n_features].T)
        if fit_intercept:
            U = U + Z[:, n_features]
        return U

    def transpose_dot(self, C, fit_intercept):
        """Return ``C^T [X, 1]`` (or ``C^T X``) of shape (K, n_features + fit_intercept)."""
        product = np.asarray((self._matrix.T @ C).T)
        if fit_intercept:
            product = np.hstack([product, C.sum(axis=0)[:, None]])
        return product

    def weighted_gram(self, c, fit_intercept):
        """Return ``D^T diag(c) D`` with ``D = [X, 1]`` (or ``X``), as a dense array."""
        if self.sparse:
            _, data, indices, indptr = self.arrays
            return csr_weighted_gram(data, indices, indptr, np.ascontiguousarray(c, float),
                                     self.shape[1], fit_intercept)
        X = self._matrix
        CX = X * c[:, None]
        gram = X.T @ CX
        if not fit_intercept:
            return gram
        column = CX.sum(axis=0)
        return np.block([[gram, column[:, None]], [column[None, :], np.array([[c.sum()]])]])

    def nonzero_column_scales(self):
        """Return the mean square of the non-zero entries of every column (0 if none).

        The units of a feature, apart from how often it is non-zero: a rare
        word of tf-idf rows has the scale of a frequent one. Sparse data are
        reduced in chunks, without a copy.
        """
        if not self.sparse:
            sums = np.einsum("ij,ij->j", self._matrix, self._matrix)
            counts = np.count_nonzero(self._matrix, axis=0)
        else:
            _, data, indices, _ = self.arrays
            sums, counts = np.zeros(self.shape[1]), np.zeros(self.shape[1])
            for start in range(0, len(data), _CHUNK):
                chunk, columns = data[start:start + _CHUNK], indices[start:start + _CHUNK]
                sums += np.bincount(columns, weights=chunk * chunk, minlength=self.shape[1])
                counts += np.bincount(columns, weights=chunk != 0, minlength=self.shape[1])
        return np.divide(sums, counts, out=np.zeros(self.shape[1]), where=counts > 0)

    def squared_row_norms(self):
        """Return ``||d_i||^2`` for every row."""
        if self.sparse:
            _, data, _, indptr = self.arrays
            return csr_squared_row_norms(data, indptr)
        return np.einsum("ij,ij->i", self._matrix, self._matrix)


def _index_arrays(X):
    """``X.indices`` and ``X.indptr`` as ``_INDEX`` (copied only if their type differs)."""
    dtype = _INDEX if X.nnz < np.iinfo(_INDEX).max else np.int64
    return X.indices.astype(dtype, copy=False), X.indptr.astype(dtype, copy=False)


def _check_sparse(X, name):
    if X.format not in ("csr", "csc", "coo"):
        raise ValueError(
            f"{name} is a sparse matrix in the {X.format!r} format; "
            "use CSR (or CSC, COO)."
        )
    X = sp.csr_matrix(X, dtype=np.float64)
    if not X.has_canonical_format:
        X = X.copy()  # sum_duplicates works in place: leave the user's matrix alone
        X.sum_duplicates()
    return X


def _check_dense(X, name):
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; its dtype is {X.dtype}.")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2D; its shape is {X.shape}.")
    X = np.ascontiguousarray(X, dtype=np.float64)
    _check_finite(X, name)
    return X


def _check_finite(values, name):
    if not np.isfinite(values).all():
        kind = "NaN" if np.isnan(values).any() else "infinity"
        raise ValueError(f"{name} contains {kind}.")
