"""Installation script of skbilevel."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "skbilevel" / "__init__.py").read_text()
).group(1)

setup(
    name="skbilevel",
    version=VERSION,
    description=(
        "Gradient-based hyperparameter tuning of scikit-learn models "
        "by stochastic bilevel optimization"
    ),
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    packages=find_packages(include=["skbilevel", "skbilevel.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-learn>=1.6",
        "numba>=0.59",
        "joblib>=1.3",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "test": ["pytest>=7", "pandas>=1.5", "matplotlib>=3.6"],
        "doc": [
            "sphinx>=7",
            "numpydoc>=1.6",
            "sphinx-gallery>=0.15",
            "matplotlib>=3.6",
            "pydata-sphinx-theme",
            "dask[distributed]",
        ],
        "dask": ["dask[distributed]"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: BSD License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
