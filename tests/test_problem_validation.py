"""Bad input to LinearBilevelProblem raises a ValueError that names the problem."""

import re

import numpy as np
import pytest
import scipy.sparse as sp

from skbilevel.problems import (
    FeatureL2,
    GroupedL2,
    LinearBilevelProblem,
    SampleWeights,
    ScalarL2,
)


@pytest.fixture
def inputs(make_data):
    """Return a factory of valid keyword arguments, with some replaced."""

    def make(loss="logistic", **overrides):
        X_train, y_train, X_val, y_val = make_data(loss)
        kwargs = dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val,
                      loss=loss)
        kwargs.update(overrides)
        return kwargs

    return make


def _with(array, index, value):
    array = np.array(array, dtype=np.float64)
    array[index] = value
    return array


def test_valid_inputs_are_accepted(inputs):
    # The baseline of every case below: only the one defect makes it fail.
    for loss in ("logistic", "multinomial", "squared"):
        for hyperparams in (None, ScalarL2(), FeatureL2(),
                            GroupedL2([0, 1, 1, 2, 0]), SampleWeights(l2=1e-3)):
            problem = LinearBilevelProblem(
                **inputs(loss, hyperparams=hyperparams, sample_weight=np.ones(30))
            )
            assert problem.n_train == 30 and problem.n_val == 20


def test_nan_in_X_train(inputs):
    kwargs = inputs()
    kwargs["X_train"] = _with(kwargs["X_train"], (4, 2), np.nan)
    with pytest.raises(ValueError, match="X_train contains NaN"):
        LinearBilevelProblem(**kwargs)


def test_nan_in_sparse_X_train(inputs):
    kwargs = inputs()
    kwargs["X_train"] = sp.csr_matrix(_with(kwargs["X_train"], (4, 2), np.nan))
    with pytest.raises(ValueError, match="X_train contains NaN"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_X_val(inputs, value):
    kwargs = inputs()
    kwargs["X_val"] = _with(kwargs["X_val"], (0, 0), value)
    with pytest.raises(ValueError, match="X_val contains inf"):
        LinearBilevelProblem(**kwargs)


def test_inf_in_sparse_X_val(inputs):
    kwargs = inputs()
    kwargs["X_val"] = sp.csr_matrix(_with(kwargs["X_val"], (0, 0), np.inf))
    with pytest.raises(ValueError, match="X_val contains inf"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("name", ["y_train", "y_val"])
@pytest.mark.parametrize("loss", ["logistic", "multinomial", "squared"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_targets(inputs, name, loss, value):
    kwargs = inputs(loss)
    kwargs[name] = _with(kwargs[name], 1, value)
    with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("n_labels", [29, 31])
def test_X_train_y_train_length_mismatch(inputs, n_labels):
    kwargs = inputs("squared")
    kwargs["y_train"] = np.zeros(n_labels)
    with pytest.raises(
        ValueError,
        match=re.escape(f"y_train must be 1D with one entry per row (30); its "
                        f"shape is ({n_labels},)"),
    ):
        LinearBilevelProblem(**kwargs)


def test_X_val_y_val_length_mismatch(inputs):
    kwargs = inputs("squared")
    kwargs["y_val"] = np.zeros(21)
    with pytest.raises(ValueError, match=r"y_val must be 1D with one entry per row \(20\)"):
        LinearBilevelProblem(**kwargs)


def test_2d_targets(inputs):
    kwargs = inputs("squared")
    kwargs["y_train"] = kwargs["y_train"][:, None]
    with pytest.raises(ValueError, match=r"y_train must be 1D .*\(30, 1\)"):
        LinearBilevelProblem(**kwargs)


def test_non_numeric_targets(inputs):
    kwargs = inputs("squared")
    kwargs["y_train"] = np.array(["a"] * 30)
    with pytest.raises(ValueError, match="y_train must be numeric"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("sparse", [False, True])
def test_X_val_with_other_number_of_features(inputs, sparse):
    kwargs = inputs()
    X_val = kwargs["X_val"][:, :4]
    kwargs["X_val"] = sp.csr_matrix(X_val) if sparse else X_val
    with pytest.raises(ValueError, match="X_val has 4 features but X_train has 5"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("name", ["y_train", "y_val"])
def test_logistic_labels_zero_one(inputs, name):
    kwargs = inputs("logistic")
    kwargs[name] = (kwargs[name] > 0).astype(int)  # {0, 1}
    with pytest.raises(
        ValueError,
        match=re.escape(f"labels in {{-1, +1}}; {name} holds [0.0]"),
    ):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("bad_label", [-1, 1.5])
@pytest.mark.parametrize("name", ["y_train", "y_val"])
def test_multinomial_labels_not_class_indices(inputs, name, bad_label):
    kwargs = inputs("multinomial")
    kwargs[name] = _with(kwargs[name], 2, bad_label)
    with pytest.raises(
        ValueError,
        match=re.escape(f"class indices 0, ..., K - 1; {name} holds "
                        f"[{float(bad_label)}]"),
    ):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("sparse", [False, True])
def test_X_with_no_rows(inputs, sparse):
    kwargs = inputs("squared")
    X = np.empty((0, 5))
    kwargs["X_train"] = sp.csr_matrix(X) if sparse else X
    kwargs["y_train"] = np.empty(0)
    with pytest.raises(ValueError, match=re.escape("X_train is empty: its shape is (0, 5)")):
        LinearBilevelProblem(**kwargs)


def test_X_val_with_no_rows(inputs):
    kwargs = inputs("squared")
    kwargs["X_val"] = np.empty((0, 5))
    kwargs["y_val"] = np.empty(0)
    with pytest.raises(ValueError, match=re.escape("X_val is empty: its shape is (0, 5)")):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("sparse", [False, True])
def test_X_with_no_features(inputs, sparse):
    kwargs = inputs("squared")
    X_train, X_val = np.empty((30, 0)), np.empty((20, 0))
    if sparse:
        X_train, X_val = sp.csr_matrix(X_train), sp.csr_matrix(X_val)
    kwargs.update(X_train=X_train, X_val=X_val)
    with pytest.raises(ValueError, match=re.escape("X_train is empty: its shape is (30, 0)")):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("fmt", ["lil", "dia", "dok", "bsr"])
@pytest.mark.parametrize("name", ["X_train", "X_val"])
def test_unsupported_sparse_format(inputs, fmt, name):
    kwargs = inputs()
    kwargs[name] = sp.csr_matrix(kwargs[name]).asformat(fmt)
    assert kwargs[name].format == fmt
    with pytest.raises(ValueError, match=f"{name} is a sparse matrix in the '{fmt}' format"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize(
    "make_X",
    [
        lambda X: X.astype(str),
        lambda X: np.full(X.shape, "a"),
        lambda X: X.astype(object),
        lambda X: [["a"] * X.shape[1]] * X.shape[0],
        lambda X: X.astype(complex),
    ],
    ids=["numbers-as-str", "letters", "object", "nested-list-of-str", "complex"],
)
def test_non_numeric_X(inputs, make_X):
    kwargs = inputs()
    kwargs["X_train"] = make_X(kwargs["X_train"])
    with pytest.raises(ValueError, match="X_train must be numeric"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("name, n_rows", [("X_train", 30), ("X_val", 20)])
def test_1d_X(inputs, name, n_rows):
    kwargs = inputs()
    kwargs[name] = kwargs[name][:, 0]
    with pytest.raises(ValueError, match=re.escape(f"{name} must be 2D; its shape is ({n_rows},)")):
        LinearBilevelProblem(**kwargs)


def test_3d_X(inputs):
    kwargs = inputs()
    kwargs["X_train"] = kwargs["X_train"][:, :, None]
    with pytest.raises(ValueError, match=r"X_train must be 2D; its shape is \(30, 5, 1\)"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("groups", [[0, 1, 1, 0], [0, 1, 1, 0, 2, 2], [[0, 1, 1, 0, 2]]],
                         ids=["too-short", "too-long", "2d"])
def test_groups_of_wrong_length(inputs, groups):
    kwargs = inputs(hyperparams=GroupedL2(groups))
    with pytest.raises(ValueError, match=r"groups must have one entry per feature \(5\)"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("groups", [[0.0, 1.0, 1.0, 0.0, 2.0], [0, 0.5, 1, 1, 0],
                                    ["a", "b", "a", "b", "a"]],
                         ids=["float", "fractional", "str"])
def test_groups_not_integers(inputs, groups):
    kwargs = inputs(hyperparams=GroupedL2(groups))
    with pytest.raises(ValueError, match="groups must hold integers"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("groups, empty", [([0, 0, 2, 2, 3], 1), ([1, 1, 2, 2, 1], 0)],
                         ids=["missing-1", "missing-0"])
def test_groups_not_numbered_0_to_n_groups(inputs, groups, empty):
    kwargs = inputs(hyperparams=GroupedL2(groups))
    with pytest.raises(
        ValueError,
        match=re.escape("groups must number the groups 0, ..., n_groups - 1 "
                        f"with no empty group; group {empty} is empty"),
    ):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("groups, lowest", [([-1, 0, 0, 1, 1], -1), ([0, 1, -2, 1, 0], -2)],
                         ids=["negative", "negative-2"])
def test_negative_groups(inputs, groups, lowest):
    kwargs = inputs(hyperparams=GroupedL2(groups))
    with pytest.raises(ValueError, match=re.escape(f"groups has negative entries ({lowest})")):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("weights", [np.ones(29), np.ones(31), np.ones((30, 1))],
                         ids=["short", "long", "2d"])
def test_sample_weight_of_wrong_shape(inputs, weights):
    kwargs = inputs(sample_weight=weights)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(30,\)"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("hyperparams", [FeatureL2(), SampleWeights()])
def test_negative_sample_weight(inputs, hyperparams):
    kwargs = inputs(sample_weight=_with(np.ones(30), 7, -0.5), hyperparams=hyperparams)
    with pytest.raises(ValueError, match="sample_weight has negative entries"):
        LinearBilevelProblem(**kwargs)


def test_all_zero_sample_weight(inputs):
    kwargs = inputs(sample_weight=np.zeros(30))
    with pytest.raises(ValueError, match="sample_weight is zero everywhere"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_sample_weight(inputs, value):
    kwargs = inputs(sample_weight=_with(np.ones(30), 7, value))
    with pytest.raises(ValueError, match="sample_weight contains NaN or infinity"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("l2", [0.0, -1.0, -1e-3, np.nan, np.inf, None, "a"])
def test_sample_weights_map_with_non_positive_l2(inputs, l2):
    kwargs = inputs(hyperparams=SampleWeights(l2=l2))
    with pytest.raises(ValueError, match="l2 must be a positive number"):
        LinearBilevelProblem(**kwargs)


def test_unknown_loss(inputs):
    kwargs = inputs(loss="hinge")
    with pytest.raises(ValueError, match="loss must be one of"):
        LinearBilevelProblem(**kwargs)


def test_hyperparams_not_a_map(inputs):
    kwargs = inputs(hyperparams="feature")
    with pytest.raises(ValueError, match="hyperparams must be a HyperparameterMap"):
        LinearBilevelProblem(**kwargs)


def test_validation_leaves_the_user_data_unchanged(inputs):
    kwargs = inputs(hyperparams=GroupedL2([0, 1, 1, 2, 0]),
                    sample_weight=np.linspace(0.0, 1.0, 30))
    copies = {k: np.copy(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    LinearBilevelProblem(**kwargs)
    for key, value in copies.items():
        np.testing.assert_array_equal(kwargs[key], value)


def test_multinomial_with_a_single_class(inputs):
    kwargs = inputs(loss="multinomial")
    kwargs.update(y_train=np.zeros(30), y_val=np.zeros(20))
    with pytest.raises(ValueError, match="needs at least 2 classes; got 1"):
        LinearBilevelProblem(**kwargs)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("rows", [[-1], [30], [], [[0, 1]], [0.5]],
                         ids=["negative", "too-large", "empty", "2d", "float"])
def test_oracles_reject_bad_rows(inputs, sparse, rows):
    kwargs = inputs()
    if sparse:
        kwargs["X_train"] = sp.csr_matrix(kwargs["X_train"])
    problem = LinearBilevelProblem(**kwargs)
    z, x = np.zeros(problem.n_inner), np.zeros(problem.n_outer)
    with pytest.raises(ValueError, match="rows must"):
        problem.inner_grad(z, x, rows=rows)
    with pytest.raises(ValueError, match="rows must"):
        problem.outer_value(z, x, rows=rows)


def test_sparse_input_is_not_modified():
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([2, 0, 0]), np.array([0, 3])),
                      shape=(1, 3))
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    LinearBilevelProblem(X, [1.0], X, [-1.0])
    for array, saved in zip((X.data, X.indices, X.indptr), before):
        np.testing.assert_array_equal(array, saved)


@pytest.mark.parametrize("value", [-0.5, np.nan, np.inf])
def test_bad_spread_penalty(inputs, value):
    with pytest.raises(ValueError, match="spread_penalty must be finite and non-negative"):
        LinearBilevelProblem(**inputs(spread_penalty=value))


def test_spread_penalty_needs_l2_strengths(inputs):
    LinearBilevelProblem(**inputs(hyperparams=SampleWeights(), spread_penalty=0.0))
    with pytest.raises(ValueError, match="spread_penalty applies to L2 strengths"):
        LinearBilevelProblem(**inputs(hyperparams=SampleWeights(), spread_penalty=1.0))
