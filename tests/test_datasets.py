import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.extmath import row_norms

from skbilevel import datasets
from skbilevel.datasets import (
    data_available,
    get_data_home,
    load_20newsgroups_tfidf,
    load_ijcnn1,
    load_mnist_hypercleaning,
    make_corrupted_labels,
)


def _skip_if_absent(name):
    return pytest.mark.skipif(
        not data_available(name),
        reason=f"{name} files not found; set SKBILEVEL_DATA to run this test",
    )


@pytest.mark.parametrize("corruption", [0.0, 0.5, 0.9, 1.0])
def test_make_corrupted_labels_fraction(corruption):
    y = np.arange(100_000) % 10
    y_corrupted, corrupted = make_corrupted_labels(y, corruption, 10, 0)
    assert y_corrupted.dtype == y.dtype
    assert set(np.unique(y_corrupted)) <= set(range(10))
    np.testing.assert_array_equal(corrupted, y_corrupted != y)
    assert corrupted.mean() == pytest.approx(corruption * 0.9, abs=0.01)


def test_make_corrupted_labels_uniform_replacements():
    y = np.zeros(100_000, dtype=np.int64)
    y_corrupted, _ = make_corrupted_labels(y, 1.0, 4, 0)
    np.testing.assert_allclose(np.bincount(y_corrupted) / y.size, 0.25,
                               atol=0.01)


def test_make_corrupted_labels_deterministic():
    y = np.arange(1000) % 10
    first = make_corrupted_labels(y, 0.5, 10, 42)
    second = make_corrupted_labels(y, 0.5, 10, 42)
    other = make_corrupted_labels(y, 0.5, 10, 43)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    np.testing.assert_array_equal(y, np.arange(1000) % 10)  # input untouched


def test_make_corrupted_labels_invalid_corruption():
    with pytest.raises(ValueError, match="corruption"):
        make_corrupted_labels([0, 1], 1.5, 2, 0)


def test_get_data_home_argument_and_env(tmp_path, monkeypatch):
    env_home = tmp_path / "env"
    env_home.mkdir()
    monkeypatch.setenv("SKBILEVEL_DATA", str(env_home))
    assert get_data_home() == env_home
    assert get_data_home(tmp_path) == tmp_path
    assert get_data_home(str(tmp_path)) == tmp_path


@pytest.mark.parametrize("use_env", [False, True])
def test_get_data_home_bad_path(tmp_path, monkeypatch, use_env):
    missing = tmp_path / "missing"
    if use_env:
        monkeypatch.setenv("SKBILEVEL_DATA", str(missing))
        args = ()
    else:
        args = (missing,)
    with pytest.raises(FileNotFoundError, match="SKBILEVEL_DATA") as exc:
        get_data_home(*args)
    assert str(missing) in str(exc.value)


def test_get_data_home_no_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SKBILEVEL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    fake_module = tmp_path / "repo" / "skbilevel" / "datasets.py"
    monkeypatch.setattr(datasets, "__file__", str(fake_module))
    with pytest.raises(FileNotFoundError, match="data_home"):
        get_data_home()


def test_data_available(tmp_path):
    assert not data_available("mnist", tmp_path)
    assert not data_available("mnist", tmp_path / "missing")
    (tmp_path / "mnist.npz").touch()
    (tmp_path / "ijcnn1.trn.bz2").touch()
    assert data_available("mnist", tmp_path)
    assert not data_available("ijcnn1", tmp_path)  # test file missing
    with pytest.raises(ValueError, match="Unknown dataset"):
        data_available("iris", tmp_path)


@_skip_if_absent("ijcnn1")
def test_load_ijcnn1():
    data = load_ijcnn1()
    shapes = {"train": 35_000, "val": 14_990, "test": 91_701}
    for split, n_samples in shapes.items():
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        assert sp.issparse(X) and X.format == "csr"
        assert X.shape == (n_samples, 22) and X.dtype == np.float64
        assert y.shape == (n_samples,) and y.dtype == np.float64
        np.testing.assert_array_equal(np.unique(y), [-1.0, 1.0])

    dense = load_ijcnn1(dense=True)
    for split in shapes:
        X = dense[f"X_{split}"]
        assert isinstance(X, np.ndarray) and X.flags.c_contiguous
        np.testing.assert_array_equal(X, data[f"X_{split}"].toarray())
        np.testing.assert_array_equal(dense[f"y_{split}"], data[f"y_{split}"])


@_skip_if_absent("mnist")
def test_load_mnist_hypercleaning():
    data = load_mnist_hypercleaning(n_train=2000, n_val=500, n_test=300,
                                    corruption=0.5, random_state=0)
    for split, n_samples in [("train", 2000), ("val", 500), ("test", 300)]:
        X = data[f"X_{split}"]
        assert X.shape == (n_samples, 784) and X.dtype == np.float64
        assert X.min() == 0.0 and X.max() == 1.0
        assert set(np.unique(data[f"y_{split}"])) <= set(range(10))
    np.testing.assert_array_equal(data.corrupted,
                                  data.y_train != data.y_train_clean)
    assert data.corrupted.mean() == pytest.approx(0.45, abs=0.05)

    # Labels are MNIST's clean ones, and train and val images do not overlap.
    def key(x):
        return np.rint(x * 255).astype(np.uint8).tobytes()

    with np.load(get_data_home() / "mnist.npz") as mnist:
        labels = {split: {x.tobytes(): label for x, label
                          in zip(mnist[f"X_{split}"], mnist[f"y_{split}"])}
                  for split in ("train", "test")}
    train_keys = {key(x) for x in data.X_train}
    assert not train_keys & {key(x) for x in data.X_val}
    for X, y, source in [(data.X_train, data.y_train_clean, "train"),
                         (data.X_val, data.y_val, "train"),
                         (data.X_test, data.y_test, "test")]:
        assert [labels[source][key(x)] for x in X] == y.tolist()

    again = load_mnist_hypercleaning(n_train=2000, n_val=500, n_test=300,
                                     corruption=0.5, random_state=0)
    for name in data:
        np.testing.assert_array_equal(data[name], again[name])

    with pytest.raises(ValueError, match="n_train"):
        load_mnist_hypercleaning(n_train=60_000, n_val=1)


@_skip_if_absent("20newsgroups")
def test_load_20newsgroups_tfidf(tmp_path, monkeypatch):
    # Building the features takes a few seconds; a private cache keeps the
    # user's one untouched and checks the round trip.
    monkeypatch.setenv("SKBILEVEL_CACHE", str(tmp_path))
    data = load_20newsgroups_tfidf()
    assert (tmp_path / "20newsgroups_tfidf.npz").is_file()
    cached = load_20newsgroups_tfidf()

    n_features = len(data.feature_names)
    assert 100_000 < n_features < 200_000
    assert len(data.target_names) == 20
    assert data.target_names[0] == "alt.atheism"
    for split, n_samples in [("train", 11_314), ("test", 7_532)]:
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        assert X.format == "csr" and X.dtype == np.float64
        assert X.shape == (n_samples, n_features)
        np.testing.assert_array_equal(np.unique(y), np.arange(20))
        assert X.has_sorted_indices
        assert (cached[f"X_{split}"] != X).nnz == 0
        np.testing.assert_array_equal(cached[f"y_{split}"], y)
    np.testing.assert_allclose(row_norms(data.X_train), 1.0)
    np.testing.assert_array_equal(cached.feature_names, data.feature_names)
    assert cached.target_names == data.target_names
