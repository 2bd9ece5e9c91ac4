"""Command line of skbilevel: ``python -m skbilevel demo``."""

import argparse
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from .problems import FeatureL2, LinearBilevelProblem
from .solvers import solve_reference


def demo():
    """Tune one L2 strength per feature of a logistic regression on breast_cancer."""
    data = load_breast_cancer()
    X_train, X_val, y_train, y_val = train_test_split(
        data.data, np.where(data.target == 1, 1.0, -1.0), test_size=0.5,
        stratify=data.target, random_state=0,
    )
    scaler = StandardScaler().fit(X_train)
    problem = LinearBilevelProblem(
        scaler.transform(X_train), y_train, scaler.transform(X_val), y_val,
        loss="logistic", hyperparams=FeatureL2(),
    )
    print(
        f"breast_cancer: {problem.n_train} training and {problem.n_val} validation "
        f"rows, {problem.n_outer} per-feature L2 strengths to tune.\n"
    )
    start = time.perf_counter()
    result = solve_reference(problem, tol=1e-6)
    elapsed = time.perf_counter() - start
    value = result.history["value"]
    print(f"validation log-loss at x = 0 (all strengths 1): {value[0]:.4f}")
    print(f"validation log-loss after tuning:               {value[-1]:.4f}")
    print(
        f"reference solver: {result.n_iter} outer iterations, "
        f"{result.history['inner_iter'][-1]} Newton steps, {elapsed:.2f} s "
        f"({'converged' if result.converged else 'not converged'})\n"
    )
    print("learned strengths exp(x_k), strongest first:")
    strengths = np.exp(result.x)
    for k in np.argsort(-strengths):
        print(f"  {data.feature_names[k]:<25s} {strengths[k]:10.3g}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skbilevel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="tune a model on a dataset bundled with scikit-learn")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()


if __name__ == "__main__":
    main()
