"""What every bilevel estimator shares: validation, splits, the solver run, refit."""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit, check_cv
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..problems import FeatureL2, LinearBilevelProblem
from ..solvers import SOLVERS, get_solver, solve_inner, solve_reference
from ..solvers._exact import DENSE_HESSIAN_MAX, single_blas_thread
from ._folds import FoldAverageProblem

#: ``solver="auto"`` runs the deterministic reference when one pass over the
#: training data costs at most this many multiply-adds (training rows times
#: inner variables), SABA otherwise. The reference makes many full passes
#: per outer iteration (Newton steps, the linear system): on IJCNN1
#: (35,000 x 23) it took 100 s where SABA took 2 s for a lower validation loss.
#: With folds, ``n_train`` sums the folds' rows and ``n_inner`` their models.
AUTO_REFERENCE_MAX_SIZE = 300_000

#: The final refit: Newton steps on small models to an inner gradient norm of
#: ``REFIT_TOL``; L-BFGS on large ones, to a largest gradient entry of
#: ``REFIT_LBFGS_TOL``, the default ``tol`` of scikit-learn's
#: ``LogisticRegression`` on the same mean-scaled objective. Each iteration is
#: a full pass: on MNIST hyper-cleaning (25,000 x 7,850), test accuracy is
#: flat from about 20 iterations on (0.911-0.912), while 1e-5 takes 123.
REFIT_TOL, REFIT_MAX_ITER = 1e-8, 200
REFIT_LBFGS_TOL, REFIT_MAX_LBFGS_ITER = 1e-4, 1000

#: A stochastic solver's validation loss may fall short of that at the exact
#: fit by this share before its hyperparameters are rejected (small models,
#: see ``BaseBilevelEstimator._inner_lag``): on IJCNN1 it is 0.1 % above.
INNER_LAG_RTOL = 1e-2

#: The check is skipped when one Hessian of the Newton solves it makes costs
#: more multiply-adds than this (training rows times the square of the
#: Hessian block's size): a few seconds each, where a million dense rows of
#: 500 features would take minutes, more than the stochastic fit.
INNER_CHECK_MAX_COST = 1e10

_SEED_MAX = np.iinfo(np.int32).max


class BaseBilevelEstimator(BaseEstimator):
    """Base class: tune the hyperparameters of a linear model on validation rows.

    A subclass says which loss and which hyperparameter map it tunes
    (:meth:`_loss`, :meth:`_hyperparameter_map`), how it encodes targets
    (:meth:`_encode_targets`), which rows validate (:meth:`_splits`) and
    which weights and strengths the final model is refitted with
    (:meth:`_refit_setup`). This class builds one
    :class:`~skbilevel.problems.LinearBilevelProblem` per split (a
    :class:`FoldAverageProblem` over several folds), runs the solver, refits
    on all rows and sets ``coef_``, ``intercept_``, ``n_iter_``,
    ``best_score_``, ``history_`` and ``solver_``.

    ``random_state`` draws two seeds: one for the split, one for the
    solver's minibatches.
    """

    _parameter_constraints: dict = {
        "solver": [StrOptions({"auto", "reference", *SOLVERS})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Real, 0, None, closed="neither")],
        "time_limit": [None, Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "step_size": [None, Interval(Real, 0, None, closed="neither")],
        "outer_step_size": [None, Interval(Real, 0, None, closed="neither")],
        "fit_intercept": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "refit": ["boolean"],
    }

    # -- to implement ------------------------------------------------------

    def _loss(self):
        """The loss of the problems: a name or a :class:`~skbilevel.problems.Loss`."""
        raise NotImplementedError

    def _hyperparameter_map(self, n_features, n_train):
        """The hyperparameter map of the tuning problems."""
        raise NotImplementedError

    def _encode_targets(self, y):
        """Return ``y`` in the loss's form; set target attributes such as ``classes_``."""
        raise NotImplementedError

    def _splits(self, X, y, seed, **params):
        """The (train, validation) index pairs of the tuning."""
        return self._cv_splits(X, y, seed)

    def _refit_setup(self, x, splits, n_samples, sample_weight):
        """Return ``(weights, strengths)`` of the final fit on all rows.

        ``weights`` (None or one per row) weigh the loss of each row;
        ``strengths`` (one per feature) are the L2 strengths in the units of
        a mean over all ``n_samples`` rows.
        """
        raise NotImplementedError

    def _set_hyperparameters(self, x, splits, n_samples, sample_weight):
        """Set the attributes that report the learned hyperparameters."""
        raise NotImplementedError

    def _check_splits(self, y, splits):
        """Raise if a split cannot be tuned on (classifiers: a class missing)."""

    def _spread_penalty(self, n_val):
        """The problem's ``spread_penalty`` for ``n_val`` validation rows in all (default 0)."""
        return 0.0

    def _score_from_objective(self, value):
        """The validation score (greater is better) for an outer objective value."""
        return -np.asarray(value, dtype=float)

    # -- input -------------------------------------------------------------

    def _validate_X_y(self, X, y, y_numeric=False):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc", "coo"], dtype=[np.float64, np.float32],
            y_numeric=y_numeric,
        )
        if sp.issparse(X):
            X = X.tocsr()
        return X, y

    def _validate_X(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=["csr", "csc", "coo"], dtype=[np.float64, np.float32],
            reset=False,
        )
        return X.tocsr() if sp.issparse(X) else X

    @staticmethod
    def _check_weights(sample_weight, X):
        if sample_weight is None:
            return None
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if not np.isfinite(sample_weight).all():
            raise ValueError("sample_weight contains NaN or infinity.")
        if not sample_weight.any():
            raise ValueError("sample_weight is zero everywhere: there is no sample to fit.")
        return sample_weight

    # -- splits ------------------------------------------------------------

    def _holdout(self, X, y, seed, stratify):
        """One random (train, validation) split, ``validation_fraction`` of the rows."""
        n = X.shape[0]
        n_val = int(round(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves the training "
                f"or the validation split of {n} samples empty."
            )
        if stratify:
            try:
                splitter = StratifiedShuffleSplit(1, test_size=n_val, random_state=seed)
                return [next(splitter.split(X, y))]
            except ValueError:
                pass  # a class too small to stratify: fall back to a plain random split
        return [next(ShuffleSplit(1, test_size=n_val, random_state=seed).split(X))]

    def _cv_splits(self, X, y, seed):
        """The (train, validation) index pairs that ``cv`` gives."""
        classifier = is_classifier(self)
        if self.cv is None:
            return self._holdout(X, y, seed, stratify=classifier)
        cv = check_cv(self.cv, y, classifier=classifier)
        if isinstance(self.cv, Integral):
            cv.shuffle, cv.random_state = True, seed
        n = X.shape[0]
        splits = []
        for train, val in cv.split(X, y):
            train, val = np.asarray(train), np.asarray(val)
            train = np.flatnonzero(train) if train.dtype == bool else train
            val = np.flatnonzero(val) if val.dtype == bool else val
            if len(train) == 0 or len(val) == 0:
                raise ValueError("cv gave a split with an empty training or validation part.")
            if min(train.min(), val.min()) < 0 or max(train.max(), val.max()) >= n:
                raise ValueError(f"cv gave indices outside [0, {n}).")
            splits.append((train.astype(np.intp), val.astype(np.intp)))
        if not splits:
            raise ValueError("cv gave no split.")
        return splits

    # -- the run -----------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, **split_params):
        """Validate, tune, refit. ``split_params`` go to :meth:`_splits`."""
        X, y = self._validate_X_y(X, y, y_numeric=not is_classifier(self))
        y = self._encode_targets(y)
        sample_weight = self._check_weights(sample_weight, X)
        rng = check_random_state(self.random_state)
        split_seed, solver_seed = rng.randint(_SEED_MAX, size=2)
        splits = self._splits(X, y, int(split_seed), **split_params)
        self._check_splits(y, splits)
        problem = self._problem(X, y, sample_weight, splits)
        several = len(splits) > 1
        if self.verbose >= 2:
            print(
                f"[{type(self).__name__}] {len(splits)} split(s): {problem.n_train} "
                f"training and {problem.n_val} validation rows, {problem.n_outer} "
                "hyperparameters."
            )
        try:
            result = self._run_solver(problem, int(solver_seed))
        finally:
            if several:
                problem.close()
        blocks = problem.split(result.z) if several else [result.z]
        self.x_ = result.x.copy()
        self.n_iter_ = int(result.n_iter)
        self.best_score_ = float(self._score_from_objective(problem.validation_loss(result.z)))
        n_samples = X.shape[0]
        if self.refit:
            weights, strengths = self._refit_setup(result.x, splits, n_samples, sample_weight)
            z = self._refit_inner(X, y, weights, strengths, np.mean(blocks, axis=0),
                                  problem.loss)
        else:
            z = np.mean(blocks, axis=0)
        self._set_coef(z, problem)
        self._set_hyperparameters(result.x, splits, n_samples, sample_weight)
        return self

    def _problem(self, X, y, sample_weight, splits):
        """The tuning problem: one split's, or the folds' stacked together.

        The folds' own problems are dropped once stacked: the stacked
        problem holds its copy of their rows.
        """
        loss = self._loss()
        spread_penalty = self._spread_penalty(sum(len(val) for _, val in splits))
        problems = [
            LinearBilevelProblem(
                X[train], y[train], X[val], y[val], loss=loss,
                hyperparams=self._hyperparameter_map(X.shape[1], len(train)),
                fit_intercept=self.fit_intercept,
                sample_weight=None if sample_weight is None else sample_weight[train],
                spread_penalty=spread_penalty,
            )
            for train, val in splits
        ]
        if len(problems) == 1:
            return problems[0]
        return FoldAverageProblem(problems, n_jobs=getattr(self, "n_jobs", None))

    def _resolve_solver(self, problem):
        if self.solver != "auto":
            return self.solver
        small = problem.n_train * problem.n_inner <= AUTO_REFERENCE_MAX_SIZE
        return "reference" if small else "saba"

    def _run_solver(self, problem, seed):
        solver = self._resolve_solver(problem)
        previous = getattr(self, "x_", None)
        x0 = None
        if self.warm_start and previous is not None and previous.shape == (problem.n_outer,):
            x0 = previous.copy()
        if solver != "reference":
            params = dict(batch_size=self.batch_size, step_size=self.step_size,
                          outer_step_size=self.outer_step_size)
            with np.errstate(all="ignore"):
                result = get_solver(solver, **params).solve(
                    problem, x0, max_epochs=self.max_epochs, time_limit=self.time_limit,
                    tol=self.tol, random_state=seed, verbose=self.verbose,
                )
            lag = self._inner_lag(problem, result)
            if lag is not None and self.solver == "auto":
                solver = "reference"  # run below, from the start
            elif lag is not None:
                warnings.warn(
                    f"{type(self).__name__}: the {solver} solver's inner iterate lags "
                    f"behind its hyperparameters: validation loss {lag[0]:.4g} at it, "
                    f"{lag[1]:.4g} at the exact fit. The hyperparameters are not "
                    "reliable; use solver='reference' or 'auto', or more max_epochs.",
                    ConvergenceWarning,
                )
        if solver == "reference":
            with np.errstate(all="ignore"):
                result = solve_reference(problem, x0, tol=self.tol, max_iter=self.max_iter,
                                         time_limit=self.time_limit, verbose=self.verbose)
        if not (np.isfinite(result.x).all() and np.isfinite(result.z).all()):
            raise FloatingPointError(
                f"{type(self).__name__}: the {solver} solver returned non-finite values; "
                "set a smaller step_size and outer_step_size."
            )
        if not result.converged:
            budget = "max_iter" if solver == "reference" else "max_epochs"
            warnings.warn(
                f"{type(self).__name__}: the {solver} solver did not converge "
                f"({result.message}). Increase {budget} or tol.",
                ConvergenceWarning,
            )
        self.solver_ = solver
        self.history_ = self._history(result)
        return result

    def _inner_lag(self, problem, result):
        """Check a stochastic solver's ``z`` against the exact fit at its ``x``.

        A single-loop solver's ``z`` lags behind ``x``. Where the inner
        problem is ill-conditioned (nearly separable rows, tiny strengths),
        the validation loss at ``z`` can look far better than at ``z*(x)``,
        which draws ``x`` on (breast cancer, 5 folds, SABA: 0.14 at ``z``,
        1.20 at ``z*``, every strength at its bound). On models whose Hessian
        blocks are small enough to factorize, and cheap enough to build
        (``INNER_CHECK_MAX_COST``), ``z`` is replaced in ``result`` by
        ``z*(x)``, and ``(at z, at z*)`` returned when the loss at ``z*``
        exceeds that at ``z`` by more than ``INNER_LAG_RTOL`` of it (None
        otherwise, and for large models, which are not checked).
        """
        size = problem.hessian_block_size
        if size > DENSE_HESSIAN_MAX or problem.n_train * size**2 > INNER_CHECK_MAX_COST:
            return None
        with np.errstate(all="ignore"), single_blas_thread():
            z, _, _ = solve_inner(problem, result.x, result.z, REFIT_TOL, REFIT_MAX_ITER)
        at_solver = problem.outer_value(result.z, result.x)
        exact = problem.outer_value(z, result.x)
        if not (np.isfinite(z).all() and np.isfinite(exact)):
            return None  # reported by _run_solver's finiteness check
        result.z = z
        if exact - at_solver <= INNER_LAG_RTOL * abs(exact):
            return None
        return at_solver, exact

    def _history(self, result):
        history = result.history
        value = np.asarray(history["value"], dtype=float)
        if "epoch" in history:
            epoch = np.asarray(history["epoch"], dtype=float)
        else:  # the reference solver: one entry per outer iteration
            epoch = np.arange(len(value), dtype=float)
        return {
            "time": np.asarray(history["time"], dtype=float),
            "epoch": epoch,
            "outer_objective": value,
            "validation_score": self._score_from_objective(value),
            "grad_norm": np.asarray(history["grad_norm"], dtype=float),
        }

    def _refit_inner(self, X, y, weights, strengths, z0, loss):
        """Fit the model on all rows with per-feature ``strengths``, from ``z0``.

        Newton's method (:func:`~skbilevel.solvers.solve_inner`) for models
        of at most ``DENSE_HESSIAN_MAX`` coefficients, whose Hessian it
        factorizes; L-BFGS on the full-data gradient for larger ones, where a
        truncated Newton method costs many passes per step.
        """
        full = LinearBilevelProblem(
            X, y, X[:1], y[:1], loss=loss, hyperparams=FeatureL2(),
            fit_intercept=self.fit_intercept, sample_weight=weights,
        )
        x = np.log(strengths)
        with np.errstate(all="ignore"), single_blas_thread():
            if full.n_inner <= DENSE_HESSIAN_MAX:
                z, n_iter, converged = solve_inner(full, x, z0, REFIT_TOL, REFIT_MAX_ITER)
            else:
                result = minimize(
                    full.inner_value_and_grad, z0, args=(x,), jac=True, method="L-BFGS-B",
                    options=dict(maxiter=REFIT_MAX_LBFGS_ITER, gtol=REFIT_LBFGS_TOL, ftol=1e-15),
                )
                z, n_iter = result.x, result.nit
                converged = result.success or np.abs(result.jac).max() <= REFIT_LBFGS_TOL
        if not np.isfinite(z).all():
            raise FloatingPointError(
                f"{type(self).__name__}: the refit on all samples gave non-finite "
                "coefficients."
            )
        if not converged:
            warnings.warn(
                f"{type(self).__name__}: the refit on all samples did not converge in "
                f"{n_iter} iterations.",
                ConvergenceWarning,
            )
        return z

    def _set_coef(self, z, problem):
        """Set ``coef_`` and ``intercept_`` from one model ``z`` of the tuning ``problem``."""
        coef = np.asarray(z, dtype=float).reshape(problem.coef_shape[0], -1)
        if self.fit_intercept:
            self.coef_, self.intercept_ = coef[:, :-1].copy(), coef[:, -1].copy()
        else:
            self.coef_, self.intercept_ = coef.copy(), np.zeros(coef.shape[0])

    def _decision(self, X):
        X = self._validate_X(X)
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
