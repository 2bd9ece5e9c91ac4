"""Loaders for the real datasets of the bilevel optimization benchmarks.

The files are not downloaded: they are read from a local data folder, see
:func:`get_data_home`. The three tasks are per-feature regularization of a
logistic regression on IJCNN1, data hyper-cleaning on MNIST and per-feature
regularization of a multinomial logistic regression on 20 Newsgroups tf-idf.
"""
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_svmlight_file
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "get_data_home",
    "data_available",
    "make_corrupted_labels",
    "load_ijcnn1",
    "load_mnist_hypercleaning",
    "load_20newsgroups_tfidf",
]

_FILES = {
    "ijcnn1": ("ijcnn1.trn.bz2", "ijcnn1.tst.bz2"),
    "mnist": ("mnist.npz",),
    "20newsgroups": ("20news-bydate.tar.xz",),
}
_HINT = (
    "Set the SKBILEVEL_DATA environment variable or pass `data_home` to point "
    "to the folder holding the dataset files."
)


def get_data_home(data_home=None):
    """Return the folder holding the dataset files.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder to use. If None, the ``SKBILEVEL_DATA`` environment variable
        is used if set, else the first existing folder among
        ``../shared/data`` relative to the current working directory and
        ``../shared/data`` relative to the source checkout.

    Returns
    -------
    data_home : pathlib.Path
        The data folder.

    Raises
    ------
    FileNotFoundError
        If the given folder does not exist or no default folder is found.
    """
    if data_home is None:
        data_home = os.environ.get("SKBILEVEL_DATA")
    if data_home is not None:
        path = Path(data_home).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"Data folder {path} does not exist. {_HINT}"
            )
        return path
    candidates = [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[2] / "shared" / "data",
    ]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"No data folder found (looked in {', '.join(map(str, candidates))}). "
        + _HINT
    )


def _data_files(name, data_home):
    """Paths of the files of dataset ``name``, raising if one is missing."""
    if name not in _FILES:
        raise ValueError(
            f"Unknown dataset {name!r}, expected one of {list(_FILES)}."
        )
    home = get_data_home(data_home)
    paths = [home / filename for filename in _FILES[name]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Dataset file {path} not found. {_HINT}")
    return paths


def data_available(name, data_home=None):
    """Tell whether the files of a dataset are present.

    Parameters
    ----------
    name : {"ijcnn1", "mnist", "20newsgroups"}
        Dataset name.
    data_home : str or path-like, default=None
        Data folder, see :func:`get_data_home`.

    Returns
    -------
    available : bool
        True if all files of the dataset are found.
    """
    try:
        _data_files(name, data_home)
    except FileNotFoundError:
        return False
    return True


def make_corrupted_labels(y, corruption, n_classes, random_state=None):
    """Replace each label by a uniformly random class with some probability.

    This is the corruption of the data hyper-cleaning task: a replaced label
    may be drawn equal to the original, so the expected fraction of changed
    labels is ``corruption * (1 - 1 / n_classes)``.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer labels in ``range(n_classes)``.
    corruption : float in [0, 1]
        Probability of replacing each label.
    n_classes : int
        Number of classes to draw the replacements from.
    random_state : int, RandomState instance or None, default=None
        Seed or generator of the random draws.

    Returns
    -------
    y_corrupted : ndarray of shape (n_samples,)
        Corrupted labels, with the dtype of ``y``.
    corrupted : ndarray of shape (n_samples,), dtype=bool
        True where ``y_corrupted`` differs from ``y``.
    """
    if not 0 <= corruption <= 1:
        raise ValueError(f"corruption must be in [0, 1], got {corruption}.")
    y = np.asarray(y)
    rng = check_random_state(random_state)
    replaced = rng.uniform(size=y.shape[0]) < corruption
    y_corrupted = y.copy()
    y_corrupted[replaced] = rng.randint(n_classes, size=replaced.sum())
    return y_corrupted, y_corrupted != y


def load_ijcnn1(data_home=None, dense=False):
    """Load IJCNN1 with its train, validation and test splits.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder, see :func:`get_data_home`.
    dense : bool, default=False
        If True, return the features as C-contiguous ndarrays instead of CSR
        matrices.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train, y_train`` (35,000 samples), ``X_val, y_val`` (14,990) and
        ``X_test, y_test`` (91,701), with 22 float64 features and float64
        labels in {-1, +1}.
    """
    trn, tst = _data_files("ijcnn1", data_home)
    X, y = load_svmlight_file(trn, n_features=22)
    X_test, y_test = load_svmlight_file(tst, n_features=22)
    if dense:
        X, X_test = X.toarray(), X_test.toarray()
    return Bunch(
        X_train=X[:35000], y_train=y[:35000],
        X_val=X[35000:], y_val=y[35000:],
        X_test=X_test, y_test=y_test,
    )


def load_mnist_hypercleaning(n_train=20000, n_val=5000, n_test=10000,
                             corruption=0.5, random_state=0, data_home=None):
    """Load MNIST for data hyper-cleaning, with corrupted training labels.

    Training and validation images are drawn without overlap from the 60,000
    MNIST training images, test images from the 10,000 test images. Each
    training label is replaced with probability ``corruption`` by a uniformly
    random class, see :func:`make_corrupted_labels`; validation and test
    labels are clean.

    Parameters
    ----------
    n_train, n_val, n_test : int, default=20000, 5000, 10000
        Sizes of the splits.
    corruption : float in [0, 1], default=0.5
        Probability of replacing each training label.
    random_state : int, RandomState instance or None, default=0
        Seed or generator of the split and of the corruption.
    data_home : str or path-like, default=None
        Data folder, see :func:`get_data_home`.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train, y_train`` (corrupted labels), ``y_train_clean``,
        ``corrupted`` (bool mask of changed labels), ``X_val, y_val`` and
        ``X_test, y_test``. Pixels are float64 in [0, 1], labels int64 in
        ``range(10)``.
    """
    (path,) = _data_files("mnist", data_home)
    with np.load(path) as mnist:
        X, y = mnist["X_train"], mnist["y_train"].astype(np.int64)
        X_test, y_test = mnist["X_test"], mnist["y_test"].astype(np.int64)
    if n_train + n_val > len(X) or n_test > len(X_test):
        raise ValueError(
            f"n_train + n_val must be at most {len(X)} and n_test at most "
            f"{len(X_test)}, got {n_train}, {n_val} and {n_test}."
        )
    rng = check_random_state(random_state)
    idx = rng.permutation(len(X))
    train, val = idx[:n_train], idx[n_train:n_train + n_val]
    test = rng.permutation(len(X_test))[:n_test]
    y_train, corrupted = make_corrupted_labels(y[train], corruption, 10, rng)
    return Bunch(
        X_train=X[train] / 255.0, y_train=y_train,
        y_train_clean=y[train], corrupted=corrupted,
        X_val=X[val] / 255.0, y_val=y[val],
        X_test=X_test[test] / 255.0, y_test=y_test[test],
    )


def _read_20newsgroups(path):
    """Read the raw posts of the tar archive, in ``load_files`` order.

    Returns a dict mapping "train" and "test" to (texts, labels), and the
    sorted topic names.
    """
    posts = {"train": [], "test": []}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile():
                folder, topic, filename = member.name.split("/")
                text = tar.extractfile(member).read().decode("latin1")
                posts[folder.rsplit("-", 1)[1]].append((topic, filename, text))
    target_names = sorted({topic for topic, _, _ in posts["train"]})
    label = {topic: i for i, topic in enumerate(target_names)}
    splits = {}
    for split, docs in posts.items():
        docs.sort(key=lambda doc: doc[:2])
        splits[split] = (
            [text for _, _, text in docs],
            np.array([label[topic] for topic, _, _ in docs], dtype=np.int64),
        )
    return splits, target_names


def _cache_file():
    """20 Newsgroups cache, in ``SKBILEVEL_CACHE`` or ~/.cache/skbilevel."""
    home = os.environ.get(
        "SKBILEVEL_CACHE", Path.home() / ".cache" / "skbilevel"
    )
    return Path(home).expanduser() / "20newsgroups_tfidf.npz"


def _save_20newsgroups(data, path):
    """Write the tf-idf Bunch as a compressed .npz, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"{split}_{attr}": getattr(data[split], attr)
        for split in ("X_train", "X_test")
        for attr in ("data", "indices", "indptr", "shape")
    }
    # Write to a temporary file then rename it, so that an interrupted or
    # concurrent run never leaves a truncated cache behind.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp",
                                     delete=False) as tmp:
        np.savez_compressed(
            tmp, **arrays, y_train=data.y_train, y_test=data.y_test,
            feature_names="\n".join(data.feature_names),
            target_names=data.target_names,
        )
    os.replace(tmp.name, path)


def _load_20newsgroups(path):
    """Read the tf-idf Bunch written by :func:`_save_20newsgroups`."""
    with np.load(path) as f:
        X_train, X_test = (
            sp.csr_matrix(
                (f[f"{X}_data"], f[f"{X}_indices"], f[f"{X}_indptr"]),
                shape=tuple(f[f"{X}_shape"]),
            )
            for X in ("X_train", "X_test")
        )
        return Bunch(
            X_train=X_train, y_train=f["y_train"],
            X_test=X_test, y_test=f["y_test"],
            feature_names=np.array(
                str(f["feature_names"]).split("\n"), dtype=object
            ),
            target_names=f["target_names"].tolist(),
        )


def load_20newsgroups_tfidf(data_home=None, cache=True):
    """Load the tf-idf features of 20 Newsgroups (bydate split).

    The posts are read from ``20news-bydate.tar.xz`` (latin-1), labelled by
    the index of their topic in sorted order, and turned into features by a
    default ``TfidfVectorizer`` fitted on the training posts.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder, see :func:`get_data_home`.
    cache : bool, default=True
        If True, load the result from ``<cache>/20newsgroups_tfidf.npz`` when
        it exists (``data_home`` is then not read), else compute it and write
        that file, where ``<cache>`` is the ``SKBILEVEL_CACHE`` environment
        variable or ``~/.cache/skbilevel``.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train, y_train`` (11,314 posts), ``X_test, y_test`` (7,532),
        with X in CSR format (float64, about 130,000 features) and int64
        labels in ``range(20)``, ``feature_names`` (the vocabulary) and
        ``target_names`` (the 20 topics).
    """
    cache_file = _cache_file()
    if cache and cache_file.is_file():
        return _load_20newsgroups(cache_file)
    (path,) = _data_files("20newsgroups", data_home)
    splits, target_names = _read_20newsgroups(path)
    vectorizer = TfidfVectorizer()
    data = Bunch(
        X_train=vectorizer.fit_transform(splits["train"][0]),
        y_train=splits["train"][1],
        X_test=vectorizer.transform(splits["test"][0]),
        y_test=splits["test"][1],
        feature_names=vectorizer.get_feature_names_out(),
        target_names=target_names,
    )
    # The vectorizer leaves the column indices of each row unsorted.
    data.X_train.sort_indices()
    data.X_test.sort_indices()
    if cache:
        _save_20newsgroups(data, cache_file)
    return data
