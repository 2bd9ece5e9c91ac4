"""Numba's on-disk cache of the package's kernels, stamped with all its sources.

Numba stamps a cached function with the contents of its own file only. A
kernel that inlines helpers from other files (the chunk kernels of
``solvers._linear_kernels`` take theirs from ``problems``) then keeps their
old code when only those files change (numba/numba#8396), and an upgrade in
place leaves the old ``.nbi``/``.nbc`` files in ``__pycache__``: a release
that changed a helper but not the kernel's file would run the old helper.

:func:`stamp_with_package_sources` puts, in front of Numba's cache locators,
the same locators with one change for the functions of this package: their
stamp is the hash of every Python source of the package, so that any change
recompiles them all (about 3 s for a first fit). It relies on Numba's
``caching`` module; where that module has another layout, Numba's own stamps
stay in place.
"""

import functools
import hashlib
import os

from numba.core import caching

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: Numba's locators that back a function by its source file, under their
#: current names and their names before Numba 0.61.
_SOURCE_LOCATORS = (
    ("UserProvidedCacheLocator", "_UserProvidedCacheLocator"),
    ("InTreeCacheLocator", "_InTreeCacheLocator"),
    ("UserWideCacheLocator", "_UserWideCacheLocator"),
)


def package_stamp():
    """Return the SHA-256 digest of the package's Python sources (paths and contents)."""
    stats = ((path, os.stat(path)) for path in _source_files())
    return _hash_sources(tuple((path, st.st_mtime_ns, st.st_size) for path, st in stats))


@functools.lru_cache(maxsize=1)
def _source_files():
    paths = []
    for root, dirs, files in os.walk(_PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        paths += [os.path.join(root, name) for name in sorted(files) if name.endswith(".py")]
    return tuple(paths)


@functools.lru_cache(maxsize=8)
def _hash_sources(stats):
    """The digest of the files in ``stats`` (path, mtime, size: the memoization key)."""
    digest = hashlib.sha256()
    for path, _, _ in stats:
        digest.update(os.path.relpath(path, _PACKAGE_DIR).encode())
        with open(path, "rb") as source:
            digest.update(source.read())
    return digest.digest()


class _PackageStamp:
    """Locator mixin: functions of this package get :func:`package_stamp`."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE_DIR + os.sep):
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return package_stamp()


def stamp_with_package_sources():
    """Make Numba stamp the cached functions of this package with all its sources.

    Returns whether the locators are in place (False under a Numba whose
    ``caching`` module has another layout).
    """
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    bases = [getattr(caching, new, None) or getattr(caching, old, None)
             for new, old in _SOURCE_LOCATORS]
    if impl is None or None in bases or not hasattr(impl, "_locator_classes"):
        return False
    others = [cls for cls in impl._locator_classes if not issubclass(cls, _PackageStamp)]
    impl._locator_classes = [
        type(f"Package{base.__name__.lstrip('_')}", (_PackageStamp, base), {})
        for base in bases
    ] + others
    return True
