"""Command line of skbilevel: ``python -m skbilevel demo [--plot FILE]``."""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._optional_dependencies import check_matplotlib_support

from . import BilevelLogisticRegressionCV, ConvergenceDisplay, HyperCleaner
from .datasets import make_corrupted_labels


def _timed(model, *args, **kwargs):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(*args, **kwargs)
    return model, time.perf_counter() - start


def demo_breast_cancer():
    """Per-feature L2 strengths against LogisticRegressionCV's grid over one C.

    Returns the fitted per-feature BilevelLogisticRegressionCV.
    """
    data = load_breast_cancer()
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.5, stratify=data.target, random_state=0
    )
    print(f"breast_cancer: {len(y_train)} rows to fit on, {len(y_test)} test rows, "
          f"{X_train.shape[1]} features.\n")
    print(f"  {'model':<52s} {'test log-loss':>13s} {'accuracy':>9s} {'time':>7s}")
    models = {
        "LogisticRegressionCV (10 values of C, 5 folds)": LogisticRegressionCV(
            Cs=10, cv=5, scoring="neg_log_loss", l1_ratios=(0.0,), use_legacy_attributes=False),
        "BilevelLogisticRegressionCV (one strength, 5 folds)": BilevelLogisticRegressionCV(
            penalty="scalar", cv=5, solver="reference", random_state=0),
        "BilevelLogisticRegressionCV (30 strengths, holdout)": BilevelLogisticRegressionCV(
            solver="reference", random_state=0),
    }
    fitted = {}
    for name, estimator in models.items():
        model, elapsed = _timed(make_pipeline(StandardScaler(), estimator), X_train, y_train)
        loss = log_loss(y_test, model.predict_proba(X_test))
        accuracy = accuracy_score(y_test, model.predict(X_test))
        print(f"  {name:<52s} {loss:13.4f} {accuracy:9.3f} "
              f"{elapsed:6.2f}s")
        fitted[name] = model[-1]
    bilevel = fitted["BilevelLogisticRegressionCV (30 strengths, holdout)"]
    print("\n  learned strengths alpha_ (per feature), strongest and weakest:")
    order = np.argsort(-bilevel.alpha_)
    for k in np.r_[order[:3], order[-3:]]:
        print(f"    {data.feature_names[k]:<25s} {bilevel.alpha_[k]:10.3g}")
    return bilevel


def demo_digits_cleaning(corruption=0.5):
    """HyperCleaner on digits with corrupted labels against LogisticRegression."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)
    rng = np.random.RandomState(0)
    trusted = rng.rand(len(y_fit)) < 0.2
    y_noisy, corrupted = make_corrupted_labels(y_fit, corruption, 10, random_state=rng)
    y_noisy[trusted] = y_fit[trusted]
    corrupted &= ~trusted
    print(f"\ndigits: {len(y_fit)} rows to fit on, {trusted.sum()} of them trusted "
          f"(clean labels); {corrupted.sum()} of the others have a wrong label "
          f"(each replaced at random with probability {corruption}); "
          f"{len(y_test)} test rows.\n")
    print(f"  {'model':<52s} {'test accuracy':>13s} {'time':>7s}")
    baselines = {
        "LogisticRegression on all rows (corrupted labels)": (
            LogisticRegression(max_iter=1000), (X_fit, y_noisy)),
        "LogisticRegression on the trusted rows only": (
            LogisticRegression(max_iter=1000), (X_fit[trusted], y_fit[trusted])),
    }
    for name, (model, data) in baselines.items():
        model, elapsed = _timed(model, *data)
        print(f"  {name:<52s} {model.score(X_test, y_test):13.3f} {elapsed:6.2f}s")
    cleaner, elapsed = _timed(HyperCleaner(solver="reference", random_state=0),
                              X_fit, y_noisy, trusted=trusted)
    print(f"  {'HyperCleaner (learns a weight per row)':<52s} "
          f"{cleaner.score(X_test, y_test):13.3f} {elapsed:6.2f}s")
    weights = cleaner.sample_weight_[~trusted]
    print(f"\n  mean learned weight: {weights[corrupted[~trusted]].mean():.2f} on the "
          f"wrong labels, {weights[~corrupted[~trusted]].mean():.2f} on the right ones.")


def save_convergence(estimator, path):
    """Save the ConvergenceDisplay of ``estimator`` (against time) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # a file only: no window, no display needed
    import matplotlib.pyplot as plt

    display = ConvergenceDisplay.from_estimator(estimator, x="time")
    display.figure_.suptitle("breast_cancer: 30 L2 strengths tuned on a holdout")
    display.figure_.savefig(path, dpi=120)
    plt.close(display.figure_)


def demo(plot=None):
    """Both demos; about half a minute.

    ``plot``: a file to save the convergence figure of the per-feature
    breast_cancer fit to (its format from the extension, such as ``.png``).
    """
    bilevel = demo_breast_cancer()
    demo_digits_cleaning()
    if plot is not None:
        save_convergence(bilevel, plot)
        print(f"\nconvergence figure of the 30-strength breast_cancer fit saved to "
              f"{Path(plot).resolve()}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skbilevel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="tune models on datasets bundled with scikit-learn")
    demo_parser.add_argument(
        "--plot", metavar="FILE",
        help="save the convergence figure of the per-feature breast_cancer fit to FILE "
             "(such as convergence.png; needs matplotlib)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.plot is not None:
            try:  # before the demo runs, not half a minute later
                check_matplotlib_support("python -m skbilevel demo --plot")
            except ImportError as error:
                parser.error(str(error))
            if not Path(args.plot).resolve().parent.is_dir():
                parser.error(f"--plot: the folder of {args.plot} does not exist.")
        demo(plot=args.plot)


if __name__ == "__main__":
    main()
