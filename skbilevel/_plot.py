"""Displays of a bilevel fit: convergence, learned L2 strengths, learned sample weights.

In the style of scikit-learn's ``RocCurveDisplay``: ``from_estimator`` takes
a fitted estimator, builds the display and calls ``plot``, which draws and
keeps the matplotlib objects on the display. matplotlib is an optional
dependency, imported inside the methods only: ``import skbilevel`` does not
import it.
"""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils._optional_dependencies import check_matplotlib_support
from sklearn.utils.validation import check_is_fitted

from .estimators import HyperCleaner
from .estimators._base import BaseBilevelEstimator
from .estimators._l2 import BaseL2Tuner

__all__ = ["ConvergenceDisplay", "StrengthsDisplay", "SampleWeightsDisplay"]

#: Label of the horizontal axis of :class:`ConvergenceDisplay` for each ``x``.
_CONVERGENCE_X = {"time": "solver time (s)", "epoch": "epoch"}
_NO_NORM_GID = "skbilevel-no-hypergradient-norm"


def _check_estimator(estimator, expected, what, caller, attribute):
    """Raise unless ``estimator`` is a fitted instance of ``expected``."""
    if isinstance(estimator, Pipeline):
        raise TypeError(
            f"{caller} takes the fitted {what} itself, not a Pipeline: pass its "
            "last step, pipe[-1]."
        )
    if not isinstance(estimator, expected):
        raise TypeError(f"{caller} expects a fitted {what}; got {type(estimator).__name__}.")
    check_is_fitted(estimator, attribute)


def _new_axes(ncols, figsize):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize, layout="constrained", squeeze=False)
    return axes[0]


def _bool_mask(mask, n, name):
    mask = np.asarray(mask)
    if mask.shape != (n,) or mask.dtype != bool:
        raise ValueError(
            f"{name} must be a boolean mask of shape ({n},); got shape {mask.shape} "
            f"and dtype {mask.dtype}."
        )
    return mask


class ConvergenceDisplay:
    """Validation objective and hypergradient norm along a bilevel run.

    Two panels side by side: the outer objective (the validation loss) and,
    on a log scale, the norm of the hypergradient (estimate), both against
    the solver time or the epochs. Runs drawn on the same axes overlay, with
    a legend: the way to compare solvers.

    Build it with :meth:`from_estimator`; the constructor takes a history.

    Parameters
    ----------
    history : dict of array-like
        The ``history_`` of a fitted bilevel estimator: ``time``, ``epoch``,
        ``outer_objective`` and ``grad_norm`` (``validation_score`` is not
        used), one entry per outer iteration or epoch.
    estimator_name : str, default=None
        Legend label of the run when :meth:`plot` is given no ``name``.

    Attributes
    ----------
    axes_ : ndarray of 2 matplotlib Axes
        The objective panel and the hypergradient panel.
    figure_ : matplotlib Figure
        The figure holding the axes.
    lines_ : list of 2 matplotlib Line2D
        The objective and the hypergradient norm of the last :meth:`plot`.

    See Also
    --------
    StrengthsDisplay : The L2 strengths that the run learned.
    SampleWeightsDisplay : The sample weights that a HyperCleaner learned.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.preprocessing import scale
    >>> from skbilevel import BilevelLogisticRegressionCV, ConvergenceDisplay
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> runs = [BilevelLogisticRegressionCV(solver=solver, max_epochs=5, random_state=0)
    ...         for solver in ("saba", "soba")]
    >>> display = ConvergenceDisplay.from_estimator(runs[0].fit(scale(X), y))
    >>> display = ConvergenceDisplay.from_estimator(runs[1].fit(scale(X), y),
    ...                                             ax=display.axes_)
    >>> [text.get_text() for text in display.axes_[0].get_legend().get_texts()]
    ['BilevelLogisticRegressionCV (saba)', 'BilevelLogisticRegressionCV (soba)']
    """

    def __init__(self, history, *, estimator_name=None):
        self.history = history
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, x="time", ax=None, name=None, **kwargs):
        """Plot the run of a fitted bilevel estimator.

        Parameters
        ----------
        estimator : BilevelLogisticRegressionCV, BilevelRidgeCV or HyperCleaner
            The fitted estimator itself (for a Pipeline, its last step
            ``pipe[-1]``).
        x : {"time", "epoch"}, default="time"
            Horizontal axis: the solver time in seconds, or the epochs
            (passes over the training rows; outer iterations for the
            reference solver).
        ax : sequence of 2 matplotlib Axes, default=None
            Where to draw the objective and the hypergradient norm; None
            makes a new figure. Pass the ``axes_`` of another display to
            overlay the runs.
        name : str, default=None
            Legend label of the run; None: the class of the estimator and
            its solver, such as ``"BilevelLogisticRegressionCV (saba)"``.
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.plot` for both lines.

        Returns
        -------
        display : ConvergenceDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        _check_estimator(estimator, BaseBilevelEstimator, "bilevel estimator",
                         f"{cls.__name__}.from_estimator", "history_")
        estimator_name = f"{type(estimator).__name__} ({estimator.solver_})"
        display = cls(estimator.history_, estimator_name=estimator_name)
        return display.plot(ax=ax, x=x, name=name, **kwargs)

    def plot(self, ax=None, *, x="time", name=None, **kwargs):
        """Draw the run.

        Entries of ``grad_norm`` that are NaN (epochs with no outer step,
        such as the warm-up of the stochastic solvers) or not positive are
        left out of the hypergradient line; with none left, the panel says
        so. Runs of at most 50 entries get markers.

        Parameters
        ----------
        ax : sequence of 2 matplotlib Axes, default=None
            Where to draw the objective and the hypergradient norm; None
            makes a new figure.
        x : {"time", "epoch"}, default="time"
            Horizontal axis: the solver time in seconds, or the epochs.
        name : str, default=None
            Legend label of the run; None: ``estimator_name`` (no legend
            entry if that is None too).
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.plot` for both lines.

        Returns
        -------
        display : ConvergenceDisplay
            This display, with ``axes_``, ``figure_`` and ``lines_`` set.
        """
        check_matplotlib_support(f"{type(self).__name__}.plot")
        if x not in _CONVERGENCE_X:
            raise ValueError(f'x must be "time" or "epoch"; got {x!r}.')
        missing = sorted({x, "outer_objective", "grad_norm"} - set(self.history))
        if missing:
            raise ValueError(f"history has no {', '.join(missing)}: pass an estimator's history_.")
        t = np.asarray(self.history[x], dtype=float)
        objective = np.asarray(self.history["outer_objective"], dtype=float)
        grad_norm = np.asarray(self.history["grad_norm"], dtype=float)
        if not t.shape == objective.shape == grad_norm.shape or t.ndim != 1:
            raise ValueError(
                f"history[{x!r}], history['outer_objective'] and history['grad_norm'] must be "
                f"1-d of one length; their shapes are {t.shape}, {objective.shape} and "
                f"{grad_norm.shape}."
            )
        axes = self._check_axes(ax)
        name = self.estimator_name if name is None else name
        style = {} if name is None else {"label": name}
        if len(t) <= 50:
            style.update(marker="o", markersize=3)
        style.update(kwargs)
        shown = np.isfinite(grad_norm) & (grad_norm > 0)
        objective_line, = axes[0].plot(t, objective, **style)
        grad_line, = axes[1].plot(t[shown], grad_norm[shown], **style)
        axes[1].set_yscale("log")
        for panel, title, ylabel in zip(
            axes, ("Validation objective", "Hypergradient norm"),
            ("outer objective (validation loss)", "norm of the hypergradient"),
        ):
            panel.set_title(title)
            panel.set_xlabel(_CONVERGENCE_X[x])
            panel.set_ylabel(ylabel)
            panel.grid(True, which="major", alpha=0.3)
        self._note_missing_norms(axes)
        if any(not line.get_label().startswith("_") for line in axes[0].get_lines()):
            axes[0].legend()
        self.axes_, self.figure_ = axes, axes[0].figure
        self.lines_ = [objective_line, grad_line]
        return self

    @staticmethod
    def _note_missing_norms(axes):
        """Say so in the hypergradient panel while none of its lines has a point."""
        notes = [text for text in axes[1].texts if text.get_gid() == _NO_NORM_GID]
        if any(len(line.get_xdata()) for line in axes[1].get_lines()):
            for text in notes:
                text.remove()
            return
        axes[1].set_xlim(axes[0].get_xlim())
        if not notes:
            axes[1].text(0.5, 0.5, "no hypergradient norm recorded\n(no outer step made yet)",
                         transform=axes[1].transAxes, ha="center", va="center",
                         color="0.4", gid=_NO_NORM_GID)

    @staticmethod
    def _check_axes(ax):
        from matplotlib.axes import Axes

        if ax is None:
            return _new_axes(2, (10, 4))
        try:
            candidates = [] if isinstance(ax, Axes) else list(np.ravel(ax))
        except TypeError:
            candidates = []
        if len(candidates) != 2 or not all(isinstance(a, Axes) for a in candidates):
            raise ValueError(
                "ax must be None or a sequence of 2 matplotlib Axes (the objective and "
                "the hypergradient panels), such as the axes_ of another ConvergenceDisplay; "
                f"got {ax!r}."
            )
        axes = np.empty(2, dtype=object)
        axes[:] = candidates
        return axes


class StrengthsDisplay:
    """Horizontal bar chart of learned L2 strengths, on a log scale.

    One bar per feature (or per group of features), sorted, the largest on
    top, with the median strength as a dashed line. With more strengths
    than ``max_features``, the ``max_features`` farthest from the median (in
    log scale) are shown, the most unusual ones, and the title says so.

    Build it with :meth:`from_estimator`; the constructor takes the strengths.

    Parameters
    ----------
    strengths : array-like of shape (n_strengths,)
        Positive strengths, such as the ``alpha_`` of a
        :class:`~skbilevel.BilevelLogisticRegressionCV` fitted with one
        strength per feature or per group.
    feature_names : array-like of str of shape (n_strengths,), default=None
        Bar labels; None: ``x0``, ``x1``, ...
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes of the chart.
    figure_ : matplotlib Figure
        The figure holding the axes.
    bars_ : matplotlib BarContainer
        The bars, from the bottom (the smallest strength shown) to the top.
    shown_ : ndarray of int
        Indices into ``strengths`` of the bars, in the order of ``bars_``.

    See Also
    --------
    ConvergenceDisplay : The run that learned the strengths.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from skbilevel import BilevelLogisticRegressionCV, StrengthsDisplay
    >>> data = load_breast_cancer(as_frame=True)
    >>> X = (data.data - data.data.mean()) / data.data.std()
    >>> model = BilevelLogisticRegressionCV(random_state=0).fit(X, data.target)
    >>> display = StrengthsDisplay.from_estimator(model, max_features=10)
    >>> len(display.bars_)
    10
    """

    def __init__(self, strengths, *, feature_names=None, estimator_name=None):
        self.strengths = strengths
        self.feature_names = feature_names
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, feature_names=None, max_features=30, ax=None,
                       **kwargs):
        """Plot the L2 strengths ``alpha_`` of a fitted estimator.

        Parameters
        ----------
        estimator : BilevelLogisticRegressionCV or BilevelRidgeCV
            The fitted estimator itself, with ``penalty="per_feature"`` or
            ``"grouped"`` (for a Pipeline, pass its last step ``pipe[-1]``).
        feature_names : array-like of str, default=None
            One label per strength. None: the estimator's
            ``feature_names_in_`` (``x0``, ``x1``, ... if it has none), or
            ``group 0``, ``group 1``, ... for ``penalty="grouped"``.
        max_features : int, default=30
            Most bars to show; the strengths farthest from the median (in
            log scale) first.
        ax : matplotlib Axes, default=None
            Where to draw; None makes a new figure.
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.barh`.

        Returns
        -------
        display : StrengthsDisplay

        Raises
        ------
        ValueError
            If the estimator learned a single strength (``penalty="scalar"``).
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib_support(caller)
        _check_estimator(estimator, BaseL2Tuner,
                         "BilevelLogisticRegressionCV or BilevelRidgeCV", caller, "alpha_")
        if np.ndim(estimator.alpha_) == 0:
            raise ValueError(
                f"{type(estimator).__name__} learned one strength (penalty="
                f"{estimator.penalty!r}): nothing to compare. {cls.__name__} is for "
                'penalty="per_feature" or "grouped".'
            )
        if feature_names is None:
            n = len(estimator.alpha_)
            if estimator.penalty == "grouped":
                feature_names = [f"group {g}" for g in range(n)]
            elif hasattr(estimator, "feature_names_in_"):
                feature_names = estimator.feature_names_in_
        display = cls(estimator.alpha_, feature_names=feature_names,
                      estimator_name=type(estimator).__name__)
        return display.plot(ax=ax, max_features=max_features, **kwargs)

    def plot(self, ax=None, *, max_features=30, name=None, **kwargs):
        """Draw the bar chart.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; None makes a new figure, its height fitted to the
            number of bars.
        max_features : int, default=30
            Most bars to show; the strengths farthest from the median (in
            log scale) first.
        name : str, default=None
            Shown in the title; None: ``estimator_name``.
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.barh`.

        Returns
        -------
        display : StrengthsDisplay
            This display, with ``ax_``, ``figure_``, ``bars_`` and ``shown_`` set.
        """
        check_matplotlib_support(f"{type(self).__name__}.plot")
        strengths = np.asarray(self.strengths, dtype=float)
        if strengths.ndim != 1 or len(strengths) < 2:
            raise ValueError(
                f"strengths must be 1-d with at least 2 entries (one strength: nothing to "
                f"compare); its shape is {strengths.shape}."
            )
        if not (np.isfinite(strengths).all() and (strengths > 0).all()):
            raise ValueError("strengths must be positive and finite.")
        n = len(strengths)
        if self.feature_names is None:
            names = np.array([f"x{k}" for k in range(n)])
        else:
            names = np.asarray(self.feature_names, dtype=str)
            if names.shape != (n,):
                raise ValueError(
                    f"feature_names must have one name per strength ({n}); its shape is "
                    f"{names.shape}."
                )
        if int(max_features) < 1:
            raise ValueError(f"max_features must be at least 1; got {max_features}.")
        log = np.log(strengths)
        median = np.median(log)
        shown = np.argsort(-np.abs(log - median), kind="stable")[:int(max_features)]
        shown = shown[np.argsort(strengths[shown], kind="stable")]
        k = len(shown)

        if ax is None:  # wide enough for the labels, high enough for the bars
            width = min(14.0, 4.8 + 0.075 * max(len(label) for label in names[shown]))
            ax = _new_axes(1, (width, max(2.8, 1.3 + 0.26 * k)))[0]
        # Bars start at a power of ten at least twice below the smallest one
        # and the median (which the bars shown may all be above).
        lowest = min(strengths[shown].min(), np.exp(median))
        base = 10.0 ** np.floor(np.log10(lowest) - np.log10(2))
        style = dict(color="C0")
        style.update(kwargs)
        bars = ax.barh(np.arange(k), strengths[shown] - base, left=base, **style)
        ax.axvline(np.exp(median), color="0.3", linestyle="--", linewidth=1,
                   label=f"median of the {n} strengths")
        ax.set_xscale("log")
        ax.set_xlim(left=base)
        ax.set_yticks(np.arange(k), names[shown])
        ax.set_ylim(-0.6, k - 0.4)
        ax.set_xlabel("L2 strength (log scale)")
        name = self.estimator_name if name is None else name
        title = "Learned L2 strengths" + ("" if name is None else f" of {name}")
        if k < n:
            title += f"\n{k} of {n} shown: those farthest from the median"
        ax.set_title(title)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(loc="lower right")
        self.ax_, self.figure_, self.bars_, self.shown_ = ax, ax.figure, bars, shown
        return self


class SampleWeightsDisplay:
    """Histogram of the sample weights that a HyperCleaner learned.

    Given which labels are wrong (``corrupted``), two histograms on the
    same bins: the rows with a right label and those with a wrong one, whose
    weights should be near 0.

    Build it with :meth:`from_estimator`; the constructor takes the weights.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,)
        Non-negative weights, such as the ``sample_weight_`` of a
        :class:`~skbilevel.HyperCleaner` on its training (not trusted) rows.
    corrupted : array-like of bool of shape (n_samples,), default=None
        Which rows have a wrong label.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes of the histogram.
    figure_ : matplotlib Figure
        The figure holding the axes.
    bars_ : dict of matplotlib BarContainer
        ``{"all": bars}`` without ``corrupted``; ``{"clean": bars,
        "corrupted": bars}`` with it.

    See Also
    --------
    ConvergenceDisplay : The run that learned the weights.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skbilevel import HyperCleaner, SampleWeightsDisplay
    >>> from skbilevel.datasets import make_corrupted_labels
    >>> X, y = load_digits(return_X_y=True)
    >>> y_noisy, corrupted = make_corrupted_labels(y, 0.3, 10, random_state=0)
    >>> trusted = np.random.RandomState(0).rand(len(y)) < 0.2
    >>> y_noisy[trusted], corrupted[trusted] = y[trusted], False
    >>> cleaner = HyperCleaner(random_state=0).fit(X / 16, y_noisy, trusted=trusted)
    >>> display = SampleWeightsDisplay.from_estimator(cleaner, corrupted=corrupted)
    >>> sorted(display.bars_)
    ['clean', 'corrupted']
    """

    def __init__(self, sample_weight, *, corrupted=None, estimator_name=None):
        self.sample_weight = sample_weight
        self.corrupted = corrupted
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, corrupted=None, trusted=None, bins=30, ax=None,
                       **kwargs):
        """Plot the learned ``sample_weight_`` of a fitted HyperCleaner.

        Only the rows whose weight was learned are counted: the trusted
        (validation) rows keep their weight and are left out.

        Parameters
        ----------
        estimator : HyperCleaner
            The fitted estimator itself (for a Pipeline, pass its last step
            ``pipe[-1]``).
        corrupted : array-like of bool of shape (n_samples,), default=None
            Which rows of the ``X`` given to ``fit`` have a wrong label; then
            the clean and the corrupted rows get a histogram each.
        trusted : array-like of bool of shape (n_samples,), default=None
            The rows to leave out; None: the estimator's ``trusted_``, the
            rows that validated.
        bins : int, default=30
            Number of bins on ``[0, 1]`` (``[0, max weight]`` if a
            ``sample_weight`` given to ``fit`` made a weight larger than 1).
        ax : matplotlib Axes, default=None
            Where to draw; None makes a new figure.
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.hist` (see :meth:`plot`).

        Returns
        -------
        display : SampleWeightsDisplay
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib_support(caller)
        _check_estimator(estimator, HyperCleaner, "HyperCleaner", caller, "sample_weight_")
        n = len(estimator.sample_weight_)
        trusted = estimator.trusted_ if trusted is None else _bool_mask(trusted, n, "trusted")
        learned = ~trusted
        if corrupted is not None:
            corrupted = _bool_mask(corrupted, n, "corrupted")[learned]
        display = cls(estimator.sample_weight_[learned], corrupted=corrupted,
                      estimator_name=type(estimator).__name__)
        return display.plot(ax=ax, bins=bins, **kwargs)

    def plot(self, ax=None, *, bins=30, name=None, **kwargs):
        """Draw the histogram(s).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; None makes a new figure.
        bins : int, default=30
            Number of bins on ``[0, 1]`` (``[0, max weight]`` if a weight is
            larger than 1).
        name : str, default=None
            Shown in the title; None: ``estimator_name``.
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.hist`; for instance
            ``log=True`` for a log scale of the counts, which shows the few
            rows between the peaks at 0 and 1. With ``corrupted``, one call
            draws both histograms: ``color`` and ``label`` are then pairs.

        Returns
        -------
        display : SampleWeightsDisplay
            This display, with ``ax_``, ``figure_`` and ``bars_`` set.
        """
        check_matplotlib_support(f"{type(self).__name__}.plot")
        weights = np.asarray(self.sample_weight, dtype=float)
        if weights.ndim != 1 or len(weights) == 0:
            raise ValueError(f"sample_weight must be 1-d and not empty; its shape is "
                             f"{weights.shape}.")
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError("sample_weight must be non-negative and finite.")
        if int(bins) < 1:
            raise ValueError(f"bins must be at least 1; got {bins}.")
        edges = np.linspace(0.0, max(1.0, weights.max()), int(bins) + 1)
        if ax is None:
            ax = _new_axes(1, (7, 4))[0]
        if self.corrupted is None:
            style = dict(color="C0")
            style.update(kwargs)
            self.bars_ = {"all": ax.hist(weights, bins=edges, **style)[2]}
        else:
            # One call: the two histograms side by side in each bin, not hiding each other.
            corrupted = _bool_mask(self.corrupted, len(weights), "corrupted")
            style = dict(color=["C0", "C3"], label=[
                f"right label: {(~corrupted).sum()} rows",
                f"wrong label: {corrupted.sum()} rows",
            ])
            style.update(kwargs)
            bars = ax.hist([weights[~corrupted], weights[corrupted]], bins=edges, **style)[2]
            self.bars_ = {"clean": bars[0], "corrupted": bars[1]}
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("learned sample weight")
        ax.set_ylabel("rows")
        name = self.estimator_name if name is None else name
        ax.set_title("Learned sample weights" + ("" if name is None else f" of {name}")
                     + f" ({len(weights)} rows)")
        ax.grid(True, axis="y", alpha=0.3)
        if self.corrupted is not None:
            ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self
