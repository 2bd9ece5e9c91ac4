"""Tests of the displays (``skbilevel/_plot.py``) and of ``demo --plot``."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbilevel
from skbilevel import (
    BilevelLogisticRegressionCV,
    BilevelRidgeCV,
    ConvergenceDisplay,
    HyperCleaner,
    SampleWeightsDisplay,
    StrengthsDisplay,
)
from skbilevel.datasets import make_corrupted_labels

# matplotlib is in the "test" extra, so these tests run in CI; the guard only
# spares a bare development install a wall of import errors.
matplotlib = pytest.importorskip(
    "matplotlib", reason="the displays need matplotlib: pip install skbilevel[test]"
)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.image import imread  # noqa: E402

ROOT = Path(skbilevel.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _fit(estimator, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **params)


@pytest.fixture(scope="module")
def cancer():
    """breast_cancer as a standardized DataFrame (30 named features) and its target."""
    data = load_breast_cancer(as_frame=True)
    X = (data.data - data.data.mean()) / data.data.std()
    return X, data.target


@pytest.fixture(scope="module")
def saba(cancer):
    return _fit(BilevelLogisticRegressionCV(solver="saba", max_epochs=5, random_state=0),
                *cancer)


@pytest.fixture(scope="module")
def soba(cancer):
    return _fit(BilevelLogisticRegressionCV(solver="soba", max_epochs=5, random_state=0),
                *cancer)


@pytest.fixture(scope="module")
def digits():
    """400 digits rows: noisy labels, which are wrong, which are trusted, and a cleaner."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16.0, y[:400]
    rng = np.random.RandomState(0)
    trusted = rng.rand(len(y)) < 0.25
    y_noisy, corrupted = make_corrupted_labels(y, 0.5, 10, random_state=rng)
    y_noisy[trusted] = y[trusted]
    corrupted &= ~trusted
    cleaner = _fit(HyperCleaner(solver="reference", max_iter=5, random_state=0),
                   X, y_noisy, trusted=trusted)
    return cleaner, corrupted, trusted


def _legend_texts(ax):
    legend = ax.get_legend()
    return [] if legend is None else [text.get_text() for text in legend.get_texts()]


# -- lazy import, missing matplotlib --------------------------------------


def test_import_does_not_import_matplotlib():
    code = "import sys, skbilevel; print(sorted(m for m in sys.modules if 'matplotlib' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_missing_matplotlib_says_how_to_install(monkeypatch, saba):
    display = ConvergenceDisplay(saba.history_)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match="pip install matplotlib"):
        display.plot()
    with pytest.raises(ImportError, match="pip install matplotlib"):
        StrengthsDisplay.from_estimator(saba)


# -- ConvergenceDisplay -----------------------------------------------------


@pytest.mark.parametrize("x", ["time", "epoch"])
def test_convergence_plots_the_history(saba, x):
    display = ConvergenceDisplay.from_estimator(saba, x=x)
    history = saba.history_
    assert len(display.axes_) == 2 and len(display.lines_) == 2
    assert display.figure_ is display.axes_[0].figure is display.axes_[1].figure
    objective, grad = display.lines_
    assert display.axes_[0].get_lines() == [objective]
    assert display.axes_[1].get_lines() == [grad]
    np.testing.assert_array_equal(objective.get_xdata(), history[x])
    np.testing.assert_array_equal(objective.get_ydata(), history["outer_objective"])
    # The warm-up epochs make no outer step: their NaN norms are left out.
    finite = np.isfinite(history["grad_norm"])
    assert 0 < finite.sum() < len(finite)
    np.testing.assert_array_equal(grad.get_xdata(), history[x][finite])
    np.testing.assert_array_equal(grad.get_ydata(), history["grad_norm"][finite])
    assert display.axes_[0].get_yscale() == "linear"
    assert display.axes_[1].get_yscale() == "log"
    for ax in display.axes_:
        assert x in ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert _legend_texts(display.axes_[0]) == ["BilevelLogisticRegressionCV (saba)"]


def test_convergence_overlays_runs_with_a_legend(saba, soba):
    first = ConvergenceDisplay.from_estimator(saba, x="epoch", name="SABA")
    second = ConvergenceDisplay.from_estimator(soba, x="epoch", ax=first.axes_, name="SOBA")
    assert second.figure_ is first.figure_
    assert [len(ax.get_lines()) for ax in first.axes_] == [2, 2]
    assert _legend_texts(first.axes_[0]) == ["SABA", "SOBA"]
    np.testing.assert_array_equal(second.lines_[0].get_ydata(),
                                  soba.history_["outer_objective"])
    # The two panels keep one color per run.
    for line in (first, second):
        assert line.lines_[0].get_color() == line.lines_[1].get_color()
    assert first.lines_[0].get_color() != second.lines_[0].get_color()


def test_convergence_from_a_history_dict():
    history = {
        "time": np.array([0.0, 0.1, 0.2, 0.3, 0.4]),
        "epoch": np.arange(5.0),
        "outer_objective": np.array([0.7, 0.5, 0.4, 0.35, 0.34]),
        "grad_norm": np.array([np.nan, 1e-1, 0.0, 1e-3, 1e-4]),
    }
    display = ConvergenceDisplay(history).plot(color="black", linewidth=3)
    grad = display.lines_[1]
    np.testing.assert_array_equal(grad.get_xdata(), [0.1, 0.3, 0.4])
    np.testing.assert_array_equal(grad.get_ydata(), [1e-1, 1e-3, 1e-4])
    assert grad.get_color() == "black" and grad.get_linewidth() == 3  # kwargs reach both
    assert display.axes_[0].get_legend() is None  # no name, no legend


def test_convergence_notes_a_run_without_outer_step(saba):
    history = {key: value[:1] for key, value in saba.history_.items()}  # the first entry
    display = ConvergenceDisplay(history).plot(x="epoch")

    def notes():
        return [t.get_text() for t in display.axes_[1].texts if "no outer step" in t.get_text()]

    assert len(display.lines_[1].get_xdata()) == 0 and len(notes()) == 1
    ConvergenceDisplay(saba.history_).plot(ax=display.axes_, x="epoch")
    assert notes() == []  # the panel has a line now


def test_convergence_rejects_bad_arguments(saba):
    display = ConvergenceDisplay(saba.history_)
    with pytest.raises(ValueError, match='"time" or "epoch"'):
        display.plot(x="iteration")
    _, axes = plt.subplots(1, 3)
    for ax in (axes[0], axes, 3):
        with pytest.raises(ValueError, match="sequence of 2 matplotlib Axes"):
            display.plot(ax=ax)
    with pytest.raises(ValueError, match="history has no grad_norm"):
        ConvergenceDisplay({"time": [0.0], "outer_objective": [1.0]}).plot()


# -- StrengthsDisplay -------------------------------------------------------


def _bar_ends(bars):
    return np.array([bar.get_x() + bar.get_width() for bar in bars])


def test_strengths_bars_are_the_strengths_labelled_by_feature(saba, cancer):
    display = StrengthsDisplay.from_estimator(saba)
    alpha = saba.alpha_
    assert len(display.bars_) == len(alpha) == 30
    assert sorted(display.shown_) == list(range(30))
    np.testing.assert_allclose(_bar_ends(display.bars_), alpha[display.shown_], rtol=1e-12)
    assert np.all(np.diff(alpha[display.shown_]) >= 0)  # the largest on top
    labels = [tick.get_text() for tick in display.ax_.get_yticklabels()]
    assert labels == list(cancer[0].columns[display.shown_])
    assert display.ax_.get_xscale() == "log"
    assert display.ax_.get_xlabel() and "BilevelLogisticRegressionCV" in display.ax_.get_title()
    median = np.exp(np.median(np.log(alpha)))
    assert display.ax_.get_xlim()[0] < min(alpha.min(), median)


def test_strengths_max_features_keeps_the_farthest_from_the_median(saba):
    display = StrengthsDisplay.from_estimator(saba, max_features=5)
    assert len(display.bars_) == len(display.shown_) == 5
    log = np.log(saba.alpha_)
    distance = np.abs(log - np.median(log))
    hidden = np.setdiff1d(np.arange(30), display.shown_)
    assert distance[display.shown_].min() >= distance[hidden].max()
    np.testing.assert_allclose(_bar_ends(display.bars_), saba.alpha_[display.shown_])
    assert "5 of 30 shown" in display.ax_.get_title()
    assert "of 30 shown" not in StrengthsDisplay.from_estimator(saba).ax_.get_title()


def test_strengths_truncation_keeps_small_outliers_too():
    # Median 1: the farthest in log scale are 1e-4, 1e2 and 3 (not 0.5), so
    # a rule that keeps the largest strengths would drop 1e-4.
    strengths = np.array([1e-4, 0.5, 1.0, 1.0, 1.0, 3.0, 1e2])
    display = StrengthsDisplay(strengths, feature_names=list("abcdefg")).plot(max_features=3)
    assert list(display.shown_) == [0, 5, 6]  # sorted by strength, bottom to top
    assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["a", "f", "g"]
    np.testing.assert_allclose(_bar_ends(display.bars_), [1e-4, 3.0, 1e2])
    assert "3 of 7 shown" in display.ax_.get_title()
    with pytest.raises(ValueError, match="nothing to compare"):
        StrengthsDisplay([0.1]).plot()


def test_strengths_labels_groups_and_default_names():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    grouped = _fit(BilevelLogisticRegressionCV(penalty="grouped", groups=np.arange(30) % 3,
                                               solver="saba", max_epochs=3, random_state=0),
                   X, y)
    display = StrengthsDisplay.from_estimator(grouped, color="green")
    assert len(display.bars_) == 3
    labels = [tick.get_text() for tick in display.ax_.get_yticklabels()]
    assert labels == [f"group {g}" for g in display.shown_]
    assert matplotlib.colors.same_color(display.bars_[0].get_facecolor(), "green")

    ridge = _fit(BilevelRidgeCV(solver="saba", max_epochs=3, random_state=0), X[:, :6], X[:, 7])
    display = StrengthsDisplay.from_estimator(ridge)
    labels = [tick.get_text() for tick in display.ax_.get_yticklabels()]
    assert labels == [f"x{k}" for k in display.shown_]
    names = list("abcdef")
    display = StrengthsDisplay.from_estimator(ridge, feature_names=names)
    labels = [tick.get_text() for tick in display.ax_.get_yticklabels()]
    assert labels == [names[k] for k in display.shown_]
    with pytest.raises(ValueError, match="one name per strength"):
        StrengthsDisplay.from_estimator(ridge, feature_names=names[:5])


# -- SampleWeightsDisplay ---------------------------------------------------


def _heights(bars):
    return np.array([bar.get_height() for bar in bars])


def test_sample_weights_split_by_corruption_adds_up(digits):
    cleaner, corrupted, trusted = digits
    display = SampleWeightsDisplay.from_estimator(cleaner, corrupted=corrupted, bins=20)
    assert set(display.bars_) == {"clean", "corrupted"}
    clean, wrong = _heights(display.bars_["clean"]), _heights(display.bars_["corrupted"])
    assert len(clean) == len(wrong) == 20
    # The trusted rows (the estimator's trusted_ by default) are left out.
    learned = ~trusted
    assert clean.sum() == (learned & ~corrupted).sum()
    assert wrong.sum() == corrupted.sum() > 0
    assert clean.sum() + wrong.sum() == learned.sum()
    weights = cleaner.sample_weight_
    edges = np.linspace(0, 1, 21)
    np.testing.assert_array_equal(wrong, np.histogram(weights[corrupted], edges)[0])
    np.testing.assert_array_equal(clean, np.histogram(weights[learned & ~corrupted], edges)[0])
    assert _legend_texts(display.ax_) == [
        f"right label: {(learned & ~corrupted).sum()} rows",
        f"wrong label: {corrupted.sum()} rows",
    ]
    assert display.ax_.get_xlim() == (0.0, 1.0)
    assert display.ax_.get_xlabel() and display.ax_.get_ylabel()
    colors = [display.bars_[key][0].get_facecolor() for key in ("clean", "corrupted")]
    assert not matplotlib.colors.same_color(*colors)


def test_sample_weights_without_corruption_and_given_trusted_rows(digits):
    cleaner, _, trusted = digits
    left_out = trusted.copy()
    left_out[:50] = True
    display = SampleWeightsDisplay.from_estimator(cleaner, trusted=left_out, log=True)
    assert list(display.bars_) == ["all"]
    assert _heights(display.bars_["all"]).sum() == (~left_out).sum()
    assert len(display.bars_["all"]) == 30
    assert display.ax_.get_yscale() == "log"  # kwargs reach hist
    assert display.ax_.get_legend() is None
    with pytest.raises(ValueError, match="boolean mask"):
        SampleWeightsDisplay.from_estimator(cleaner, trusted=left_out[1:])
    with pytest.raises(ValueError, match="boolean mask"):
        SampleWeightsDisplay.from_estimator(cleaner, corrupted=left_out.astype(int))


# -- estimator checks -------------------------------------------------------


@pytest.mark.parametrize("display", [ConvergenceDisplay, StrengthsDisplay,
                                     SampleWeightsDisplay])
def test_unfitted_estimator_raises_not_fitted(display):
    estimator = HyperCleaner() if display is SampleWeightsDisplay else BilevelRidgeCV()
    with pytest.raises(NotFittedError):
        display.from_estimator(estimator)


def test_wrong_estimator_types_raise_type_errors(saba, digits):
    cleaner = digits[0]
    with pytest.raises(TypeError, match="expects a fitted bilevel estimator; got Logistic"):
        ConvergenceDisplay.from_estimator(LogisticRegression())
    with pytest.raises(TypeError, match="LogisticRegressionCV or BilevelRidgeCV; got Hyper"):
        StrengthsDisplay.from_estimator(cleaner)
    with pytest.raises(TypeError, match="expects a fitted HyperCleaner; got BilevelLogistic"):
        SampleWeightsDisplay.from_estimator(saba)


def test_pipeline_and_scalar_penalty_are_refused(cancer):
    X, y = cancer
    pipe = _fit(make_pipeline(StandardScaler(), BilevelLogisticRegressionCV(
        penalty="scalar", solver="saba", max_epochs=2, random_state=0)), X, y)
    for display in (ConvergenceDisplay, StrengthsDisplay):
        with pytest.raises(TypeError, match=r"not a Pipeline: pass its last step, pipe\[-1\]"):
            display.from_estimator(pipe)
    with pytest.raises(ValueError, match="one strength.*nothing to compare"):
        StrengthsDisplay.from_estimator(pipe[-1])
    ConvergenceDisplay.from_estimator(pipe[-1])  # a scalar run has a history all the same


# -- command line -----------------------------------------------------------


def test_demo_plot_saves_the_convergence_figure(tmp_path, monkeypatch, capsys):
    """``demo --plot FILE`` writes the figure; the digits half of the demo is skipped."""
    import skbilevel.__main__ as cli

    monkeypatch.setattr(cli, "demo_digits_cleaning", lambda: None)
    path = tmp_path / "convergence.png"
    cli.main(["demo", "--plot", str(path)])
    out = capsys.readouterr().out
    assert "BilevelLogisticRegressionCV (30 strengths, holdout)" in out  # the table
    assert f"saved to {path.resolve()}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[1] > image.shape[0] > 200  # two panels side by side
    assert image[..., :3].std() > 0.05  # not a blank canvas
    with pytest.raises(SystemExit):  # a missing folder fails before the demo runs
        cli.main(["demo", "--plot", str(tmp_path / "missing" / "convergence.png")])
    assert "does not exist" in capsys.readouterr().err
