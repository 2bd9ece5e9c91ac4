"""The options of the Numba kernels, by kind of function."""

#: Options of every kernel: cached, without the GIL, and without the C
#: callback wrapper Numba otherwise compiles for each function (``cfunc``,
#: for functions passed as values, which nothing here does; a fifth of a
#: second of a first fit).
JIT = dict(cache=True, nogil=True, no_cfunc_wrapper=True)

#: Options of the helpers with loops that the kernels call: compiled (and
#: cached) on their own, then inlined by LLVM; inlining them in Numba's IR
#: (``inline="always"``) doubled the compile time of the kernels.
HELPER_JIT = dict(**JIT, boundscheck=False, error_model="numpy",
                  fastmath={"reassoc", "contract"})

#: Options of the smallest helpers (a few scalar operations, or a few
#: prefetch hints): inlined in Numba's IR into each caller, which spares
#: the compile of a function of their own; for ``sigmoid``,
#: ``scalar_loss_terms``, the row prefetches and the solvers' ``_clip``,
#: about a tenth of a first SABA fit's compile time.
INLINE_JIT = dict(**HELPER_JIT, inline="always")

#: Options of the kernels that loop over many rows: reassociation and fused
#: multiply-adds let LLVM vectorize the row reductions, but no ``nnan`` or
#: ``ninf`` (divergence is detected through non-finite values); no bounds
#: checks; float division without the zero test of Python's error model.
FAST_JIT = dict(**JIT, boundscheck=False, error_model="numpy",
                fastmath={"reassoc", "contract"})
