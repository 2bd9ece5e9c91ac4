"""Sphinx configuration of the skbilevel documentation.

Build from the repository's root with::

    sphinx-build -W -b html doc doc/_build/html

The gallery (``examples/plot_*.py``) runs during the build.
"""

import os
import re
from pathlib import Path

# The examples print timings. On a small machine, BLAS threads compete with
# each other and with the solvers (serial Numba kernels) and make them
# erratic: use one BLAS thread, as the benchmarks do, unless told otherwise.
# This must come before NumPy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import skbilevel  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The real datasets of the papers (IJCNN1, MNIST) live beside the project in
# ``../shared/data``; the examples use them when they are present and fall
# back to scikit-learn's bundled data otherwise. A user's SKBILEVEL_DATA wins.
_SHARED_DATA = ROOT.parent / "shared" / "data"
if "SKBILEVEL_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["SKBILEVEL_DATA"] = str(_SHARED_DATA)

# -- Project -----------------------------------------------------------------

project = "skbilevel"
author = "the skbilevel developers"
copyright = "the skbilevel developers, BSD 3-Clause License"
release = skbilevel.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
default_role = "literal"
pygments_style = "sphinx"

# API reference: one generated page per public object (see api.rst).
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- HTML --------------------------------------------------------------------

try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_depth": 2,
        "show_toc_level": 2,
        "secondary_sidebar_items": ["page-toc", "sourcelink"],
    }
except ImportError:  # pragma: no cover - the doc extra installs it
    html_theme = "alabaster"
    html_theme_options = {}

html_title = f"skbilevel {release}"
html_static_path = []
html_show_sourcelink = True

# -- Gallery -----------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Run every example whose file name starts with plot_.
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skbilevel",),
    "remove_config_comments": True,
    "min_reported_time": 0,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    # Print what the examples print, not the repr of their last expression.
    "capture_repr": (),
}


# -- Docstrings inherited from scikit-learn ------------------------------------

# The estimators inherit methods from scikit-learn (``score``,
# ``set_fit_request``, ...) whose docstrings point into scikit-learn's own
# documentation with :ref: and :term:. Those targets do not exist here (and
# intersphinx would need the network at build time): link to scikit-learn's
# website instead.
SKLEARN_URL = "https://scikit-learn.org/stable/"
SKLEARN_REFS = {
    "metadata_routing": ("metadata routing", "metadata_routing.html"),
    "accuracy_score": ("accuracy_score", "modules/model_evaluation.html#accuracy-score"),
    "r2_score": ("r2_score", "modules/model_evaluation.html#r2-score"),
}
_ROLE = re.compile(r":(ref|term):`([^`<]+?)(?:\s*<([^`>]+)>)?`")


def _sklearn_link(match):
    role, text, target = match.group(1), match.group(2).strip(), match.group(3)
    target = (target or text).strip()
    if role == "term":
        anchor = "term-" + re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-")
        return f"`{text} <{SKLEARN_URL}glossary.html#{anchor}>`__"
    title, page = SKLEARN_REFS.get(target, (text, "user_guide.html"))
    return f"`{title} <{SKLEARN_URL}{page}>`__"


def _link_sklearn_targets(app, what, name, obj, options, lines):
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] != "sklearn":
        return
    lines[:] = [_ROLE.sub(_sklearn_link, line) for line in lines]


# -- Every public name in the API reference -----------------------------------

#: The modules whose ``__all__`` is the public API, and the names of it that
#: need no page of their own.
PUBLIC_MODULES = ("skbilevel", "skbilevel.problems", "skbilevel.solvers", "skbilevel.datasets")
NO_PAGE = {"skbilevel.__version__"}


def _check_api_reference(app):
    """Warn (an error under ``-W``) about public names missing from api.rst."""
    import importlib

    from sphinx.util import logging

    text = (HERE / "api.rst").read_text()
    documented, module = set(), None
    for line in text.splitlines():
        found = re.match(r"\.\. currentmodule:: (\S+)", line)
        if found:
            module = found.group(1)
        elif module and re.match(r"   [A-Za-z_]\w*$", line):
            documented.add(f"{module}.{line.strip()}")
    public = {
        f"{name}.{obj}"
        for name in PUBLIC_MODULES
        for obj in importlib.import_module(name).__all__
    }
    missing = sorted(public - documented - NO_PAGE)
    if missing:
        logging.getLogger(__name__).warning(
            "public names missing from doc/api.rst: %s", ", ".join(missing)
        )


# -- Benchmark tables from benchmarks/results ----------------------------------

BENCH_SOLVERS = ROOT / "benchmarks" / "results" / "bench_solvers.csv"
#: Written at every build, included by user_guide/solvers.rst. Not an .rst
#: file, so that Sphinx does not read it as a page of its own.
BENCH_TABLES = HERE / "generated" / "bench_solvers_tables.inc"
SOLVER_NAMES = {"soba": "SOBA", "saba": "SABA", "amigo": "AmIGO", "sid": "SID",
                "stocbio": "stocBiO", "aid": "AID", "itd": "ITD"}


def _number(value):
    """A CSV cell as a float, or None when empty."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value != value else value


def _seconds(value):
    """Seconds or milliseconds: two decimals below 10, one above."""
    if value is None:
        return "not reached"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _gap(value):
    return f"{value:.2g}" if value >= 1e-2 else f"{value:.1e}"


def _list_table(header, rows, widths):
    lines = [".. list-table::", "   :header-rows: 1",
             "   :widths: " + " ".join(map(str, widths)), ""]
    for row in [header] + rows:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def _bench_solvers_tables():
    """The reST tables of user_guide/solvers.rst, from bench_solvers.csv."""
    import csv

    if not BENCH_SOLVERS.is_file():
        return (".. note:: ``benchmarks/results/bench_solvers.csv`` is not in this "
                "source tree: run ``python benchmarks/bench_solvers.py`` to make it.\n")
    with open(BENCH_SOLVERS, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    runs = [r for r in rows if r["solver"] in SOLVER_NAMES and not r.get("error")]
    for dataset, title in IJCNN1_TITLES.items():
        out.extend(_ijcnn1_tables(rows, runs, dataset, title))
    mnist = [r for r in runs if r["dataset"] == "mnist"]
    mnist.sort(key=lambda r: -_number(r["final test acc"]))
    if mnist:
        out.append("**MNIST hyper-cleaning.**\n")
        table = [[SOLVER_NAMES.get(r["solver"], r["solver"]), f"{_number(r['epochs']):.0f}",
                  _seconds(_number(r["solver s"])), _seconds(_number(r["mean ms/epoch"])),
                  f"{_number(r['final test acc']):.3f}", f"{_number(r['final auc']):.3f}"]
                 for r in mnist]
        out.append(_list_table(
            ["solver", "epochs run", "solver time (s)", "ms per epoch (mean)",
             "final test accuracy", "AUC"], table, [14, 14, 16, 16, 16, 16]))
    compile_rows = [r for r in rows if r["dataset"] == "numba" and r["solver"] == "saba"]
    cold = [_number(r["cold first fit s"]) for r in compile_rows]
    warm = [_number(r["warm first fit s"]) for r in compile_rows]
    second = [_number(r["warm second fit s"]) for r in compile_rows]
    cold, warm, second = ([v for v in vals if v is not None] for vals in (cold, warm, second))
    if cold and warm and second:
        out.append(
            "**Compilation.** The first fit in a fresh environment compiles the Numba "
            f"kernels: {cold[0]:.1f} s for SABA's first fits of a logistic and a "
            "hyper-cleaning problem (two kernels) with an empty cache, "
            f"{warm[0]:.2f} s with the cache warm, then {second[0] * 1e3:.0f} ms for "
            "second fits in the same process (rows ``numba`` of the CSV; one first "
            "fit alone: ``benchmarks/bench_epochs.py``).\n")
    return "\n".join(out)


#: The IJCNN1 tasks of bench_solvers.csv and the titles of their tables.
IJCNN1_TITLES = {
    "ijcnn1": "IJCNN1, per-feature L2 strengths of a logistic regression.",
    "ijcnn1_no_intercept": "IJCNN1 without intercept (the peer benchmark's formulation).",
}


def _ijcnn1_tables(rows, runs, dataset, title):
    """The table, gradient timing and SABA seeds text of one IJCNN1 task."""
    task_runs = sorted((r for r in runs if r["dataset"] == dataset),
                    key=lambda r: _number(r["final gap"]))
    if not task_runs:
        return []
    out = [f"**{title}** Best value known :math:`h^* = {_number(task_runs[0]['h*']):.6f}`.\n"]
    table = []
    for r in task_runs:
        cells = [SOLVER_NAMES.get(r["solver"], r["solver"]),
                 f"{_number(r['epochs']):.0f}", _seconds(_number(r["solver s"])),
                 _seconds(_number(r["mean ms/epoch"]))]
        for eps in ("0.01", "0.001", "0.0001"):
            t, e = _number(r[f"s to abs {eps}"]), _number(r[f"epochs to abs {eps}"])
            cells.append("not reached" if t is None else f"{_seconds(t)} ({e:.0f} epochs)")
        cells.append(_gap(_number(r["final gap"])))
        table.append(cells)
    out.append(_list_table(
        ["solver", "epochs run", "solver time (s)", "ms per epoch (mean)",
         "time to gap 1e-2 (s)", "time to gap 1e-3 (s)", "time to gap 1e-4 (s)",
         "final gap"], table, [10, 9, 10, 10, 15, 15, 15, 10]))
    alone, between = ([g for g in (_number(r.get(key)) for r in task_runs) if g is not None]
                      for key in ("numpy grad ms", "numpy grad between epochs ms"))
    if alone and between:
        out.append("One full-data NumPy gradient of the inner objective took "
                   f"{min(between):.2g} to {max(between):.2g} ms timed after each "
                   f"epoch of the runs, {min(alone):.2g} to {max(alone):.2g} ms timed "
                   "alone several times in a row, which keeps its data in the "
                   "caches (columns ``numpy grad between epochs ms`` and "
                   "``numpy grad ms``).\n")
    out.append(_saba_seeds_text([r for r in rows if r["solver"] == "saba (seeds)"
                                and r["dataset"] == dataset]))
    return out


def _saba_seeds_text(seeds):
    """SABA's epochs to the gaps over the ``random_state`` values of bench_solvers."""
    if not seeds:
        return ""
    parts, missed = [], False
    for tag, what in (("abs", "gap"), ("ref", "gap to the reference's value")):
        for eps in ("0.001", "0.0001"):
            if f"epochs to {tag} {eps}" not in seeds[0]:  # a CSV from before the column
                continue
            epochs = [_number(r[f"epochs to {tag} {eps}"]) for r in seeds]
            reached = sorted(e for e in epochs if e is not None)
            missed = missed or (tag == "abs" and len(reached) < len(seeds))
            median = _number(seeds[0][f"median epochs to {tag} {eps}"])
            parts.append(f"{what} {eps} in a median of "
                         + ("(not reached)" if median is None else f"{median:g}")
                         + f" epochs ({len(reached)} of {len(seeds)} runs reach it"
                         + (f", the slowest in {reached[-1]:.0f})" if reached else ")"))
    text = f"SABA run with ``random_state`` 0 to {len(seeds) - 1}: " + "; ".join(parts) + "."
    if missed:
        text += (" :math:`h` is not convex: a run that misses a gap ends in another "
                 "local minimum (column ``final gap`` of the rows ``saba (seeds)``).")
    return text + "\n"


def _write_bench_tables(app):
    BENCH_TABLES.parent.mkdir(exist_ok=True)
    text = _bench_solvers_tables()
    if not BENCH_TABLES.is_file() or BENCH_TABLES.read_text() != text:
        BENCH_TABLES.write_text(text)


def setup(app):
    app.connect("autodoc-process-docstring", _link_sklearn_targets)
    app.connect("builder-inited", _check_api_reference)
    app.connect("builder-inited", _write_bench_tables)
