"""The interface every bilevel problem exposes to the solvers."""

import numpy as np


class BilevelProblem:
    """Inner objective ``G(z, x)`` and outer objective ``F(z, x)`` with their oracles.

    Both objectives are averages over samples: ``G`` over ``n_train``
    training samples, ``F`` over ``n_val`` validation samples. Every oracle
    takes ``rows``: ``None`` for the full average, or an array of row indices
    for the average over that minibatch (an unbiased estimate when the rows
    are drawn uniformly). Vectors ``z``, ``v`` (size ``n_inner``) and ``x``
    (size ``n_outer``) are flat float64 arrays.

    The sign conventions are those of SOBA/SABA: the linear system solution
    is ``v* = -[d11 G]^{-1} d1 F`` and the hypergradient is
    ``d2 F + d21 G v*``.

    Attributes
    ----------
    n_inner, n_outer : int
        Dimensions of ``z`` and ``x``.
    n_train, n_val : int
        Number of samples of ``G`` and ``F``.
    """

    def inner_value(self, z, x, rows=None):
        """Return ``G(z, x)``."""
        raise NotImplementedError

    def inner_grad(self, z, x, rows=None):
        """Return ``d1 G(z, x)``."""
        raise NotImplementedError

    def inner_hvp(self, z, x, v, rows=None):
        """Return ``d11 G(z, x) v``."""
        raise NotImplementedError

    def inner_value_and_grad(self, z, x):
        """Return ``G(z, x)`` and ``d1 G(z, x)`` on the full data (subclasses may share work)."""
        return self.inner_value(z, x), self.inner_grad(z, x)

    def inner_hessian(self, z, x):
        """Return ``d11 G(z, x)`` as a dense array, from ``n_inner`` products.

        Only for problems small enough to factorize their Hessian.
        """
        identity = np.eye(self.n_inner)
        return np.column_stack([self.inner_hvp(z, x, e) for e in identity])

    @property
    def hessian_block_size(self):
        """Size of the largest block of :meth:`inner_hessian_blocks`."""
        return self.n_inner

    def inner_hessian_blocks(self, z, x):
        """Return ``d11 G(z, x)`` as its diagonal blocks: a list of ``(index, block)``.

        ``block`` is the dense Hessian of the inner variables ``z[index]``,
        and the blocks do not interact. One block, the whole Hessian, unless
        the inner variables split into independent groups.
        """
        return [(np.arange(self.n_inner), self.inner_hessian(z, x))]

    def inner_cross(self, z, x, v, rows=None):
        """Return ``d21 G(z, x) v``."""
        raise NotImplementedError

    def inner_oracles(self, z, x, v, rows=None):
        """Return ``(d1 G, d11 G v, d21 G v)`` computed together on ``rows``."""
        return (
            self.inner_grad(z, x, rows),
            self.inner_hvp(z, x, v, rows),
            self.inner_cross(z, x, v, rows),
        )

    def inner_l2(self, x):
        """Return ``r`` such that ``G`` contains ``(1/2) sum_c r_c z_c^2``.

        Every oracle includes this quadratic part. Stochastic solvers take it
        exactly, as a proximal step (see ``solvers.prox_step``), so that large
        strengths do not limit their step sizes. Default: no such part.
        """
        return np.zeros(self.n_inner)

    def sample_smoothness(self, x):
        """Return, for every training sample, the smoothness of its term of ``G``.

        The quadratic part of :meth:`inner_l2` is left out. These are the
        constants that the stochastic solvers' inner and linear-system steps
        must respect (ALGORITHMS.md section 5).
        """
        raise NotImplementedError

    def outer_value(self, z, x, rows=None):
        """Return ``F(z, x)``."""
        raise NotImplementedError

    def outer_grad(self, z, x, rows=None):
        """Return ``d1 F(z, x)``."""
        raise NotImplementedError

    def outer_grad_x(self, z, x, rows=None):
        """Return ``d2 F(z, x)``."""
        raise NotImplementedError
