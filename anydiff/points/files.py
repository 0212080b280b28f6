"""Point clouds in files, for the ``anydiff`` command: ``.npy`` and ``.npz``, read strictly,
written all or nothing.

Reading (``fit``'s training clouds, ``complete``'s partial scans):

* ``.npy`` -- one array of shape ``(n_clouds, n_points, 3)``: clouds of one size. ``complete``
  also takes a single scan ``(m, 3)``. (For ``fit`` a 2-D ``.npy`` is a table, not a cloud.)
* ``.npz`` -- either one 3-D array ``(n_clouds, n_points, 3)`` (under any key; ``clouds`` is the
  name written here: ``np.savez(f, clouds=X)``), or one ``(n_i, 3)`` array per cloud, of any
  sizes, in the order the file stores them (``np.savez(f, *clouds)`` writes ``arr_0``,
  ``arr_1``, ... in order). Plus, optionally, ``labels``: a 1-D array with one class per cloud
  (integers or text), for a conditional model. Nothing else: a mix of 3-D and 2-D arrays, a
  pickled (object) array, an empty file, NaN or infinite coordinates, a last axis other than
  x, y, z, or labels of the wrong length is an error naming the file, the key and the fix.

Writing (``sample`` and ``complete``): ``.npy`` gets the array ``(n, n_points, 3)``; ``.npz``
gets it under the key ``clouds`` (and ``labels`` when the clouds were sampled for one class), so
that a sampled file can be read back as training data.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from .._utils import atomic_write, check_output_path

__all__ = ["is_cloud_file", "read_clouds", "check_cloud_output", "write_clouds"]

EXTENSIONS = (".npy", ".npz")
LABELS = "labels"
HOW = ("save the clouds with np.savez(f, clouds=X) for (n_clouds, n_points, 3), or np.savez(f, *clouds) for "
       "clouds of different sizes")


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty; {HOW}")


def is_cloud_file(path) -> bool:
    """Whether ``fit`` reads ``path`` as point clouds: any ``.npz``, and a ``.npy`` holding a
    3-D array. Other files (and missing ones) are left to the table reader."""
    path = os.fspath(path)
    if _ext(path) == ".npz":
        return True
    if _ext(path) != ".npy" or not os.path.isfile(path):
        return False
    _check_exists(path)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only, not the data
    except Exception as exc:  # truncated files raise EOFError, pickles ValueError
        raise ValueError(f"{path}: cannot read it as a numpy array file ({_first_line(exc)})") from exc
    ndim = data.ndim
    del data
    return ndim == 3


def _cloud(path: str, where: str, c: np.ndarray, min_points: int) -> np.ndarray:
    if c.dtype.kind not in "iuf":
        raise ValueError(f"{path}{where}: holds {c.dtype} values; clouds hold x, y, z coordinates (numbers)")
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"{path}{where}: shape {c.shape}; each cloud is an (n_points, 3) array of x, y, z")
    if len(c) < min_points:
        raise ValueError(f"{path}{where}: {len(c)} point(s); each cloud needs at least {min_points}")
    bad = ~np.isfinite(c).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}{where}: {int(bad.sum())} point(s) with NaN or infinite coordinates (the first is "
                         f"point {int(np.argmax(bad))}); remove or repair them")
    return c.astype(np.float64)


def _stack(path: str, X: np.ndarray, where: str, min_points: int) -> np.ndarray:
    """A 3-D array (n_clouds, n_points, 3), checked."""
    if X.ndim == 3 and X.shape[-1] != 3:
        raise ValueError(f"{path}{where}: a 3-D array is read as point clouds (n_clouds, n_points, 3), but its "
                         f"shape is {X.shape}; the last axis must hold x, y, z")
    if X.shape[0] == 0:
        raise ValueError(f"{path}{where}: holds no clouds (shape {X.shape}); {HOW}")
    for i in range(len(X)):
        _cloud(path, f"{where}, cloud {i}", X[i], min_points)
    return X.astype(np.float64)


def _labels(path: str, labels: np.ndarray, n_clouds: int, what: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.dtype.kind not in "biufUS":
        raise ValueError(f"{path}: {what} must be a 1-D array of numbers or text, one class per cloud; got "
                         f"{labels.dtype} of shape {labels.shape}")
    if len(labels) != n_clouds:
        raise ValueError(f"{path}: {what} holds {len(labels)} label(s) for {n_clouds} clouds; give one label per cloud")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"{path}: {what}: cloud {int(np.argmax(~np.isfinite(labels)))} has no label (NaN)")
        if np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
    return labels


def _read_npz(path: str, min_points: int):
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read it as a numpy .npz archive ({_first_line(exc)})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy file renamed .npz
        return archive, None
    with archive:
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:  # object arrays: a list of ragged clouds saved as one array
                raise ValueError(f"{path}, key {key!r}: a pickled (object) array, which is not read; {HOW}") from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}, key {key!r}: cannot read it ({_first_line(exc)})") from exc
    labels = arrays.pop(LABELS, None)
    if not arrays:
        raise ValueError(f"{path}: holds no clouds{' (only labels)' if labels is not None else ''}; {HOW}")
    stacks = [k for k, a in arrays.items() if a.ndim == 3]
    if stacks and len(arrays) > 1:
        raise ValueError(f"{path}: holds the 3-D array {stacks[0]!r} and {len(arrays) - 1} other array(s); give "
                         f"either one 3-D array (n_clouds, n_points, 3) or one (n_i, 3) array per cloud, plus "
                         f"optionally {LABELS!r}")
    if stacks:
        X = _stack(path, arrays[stacks[0]], f", key {stacks[0]!r}", min_points)
    else:
        X = [_cloud(path, f", key {k!r}", a, min_points) for k, a in arrays.items()]
        if len({len(c) for c in X}) == 1:
            X = np.stack(X)
    if labels is not None:
        labels = _labels(path, labels, len(X), f"the array {LABELS!r}")
    return X, labels


def read_clouds(path, *, labels_path=None, min_points: int = 2, single: bool = False):
    """Clouds and their labels (or None) from ``path`` (see the module's docstring).

    Returns ``(X, labels)``: ``X`` an array ``(n_clouds, n_points, 3)`` when every cloud has
    the same size, else a list of ``(n_i, 3)`` arrays; float64. ``labels_path`` is a separate
    label file (``fit --labels``: .csv or .npy, one per cloud). ``single`` accepts a ``.npy``
    holding one cloud ``(m, 3)``, returned as it is (``complete``'s one scan).
    """
    path = os.fspath(path)
    if _ext(path) not in EXTENSIONS:
        raise ValueError(f"{path}: unknown file type {_ext(path) or '(none)'!r}; point clouds are read from "
                         ".npy (n_clouds, n_points, 3) or .npz")
    _check_exists(path)
    if _ext(path) == ".npz":
        X, labels = _read_npz(path, min_points)
    else:
        from ..datafiles import _load_npy

        X, labels = _load_npy(path), None
    if isinstance(X, np.ndarray):
        if X.dtype.kind not in "iuf":
            raise ValueError(f"{path}: holds {X.dtype} values; clouds hold x, y, z coordinates (numbers)")
        if single and X.ndim == 2:
            return _cloud(path, "", X, min_points), None
        if X.ndim != 3:
            one = " or one cloud (m, 3)" if single else ""
            raise ValueError(f"{path}: shape {X.shape}; point clouds are an array (n_clouds, n_points, 3){one}, "
                             "or an .npz with one (n_i, 3) array per cloud")
        X = _stack(path, X, "", min_points)
    if labels_path is not None:
        if labels is not None:
            raise ValueError(f"{path} holds {LABELS!r} and --labels {labels_path} was given too; use one of them")
        from ..datafiles import read_labels

        labels = _labels(os.fspath(labels_path), read_labels(labels_path), len(X), f"the labels for {path}")
    return X, labels


def check_cloud_output(path) -> str:
    """Check an output file for clouds (its type and folder) before any work is done."""
    path = os.fspath(path)
    if _ext(path) not in EXTENSIONS:
        raise ValueError(f"{path}: point clouds are written as .npy (an array (n, n_points, 3)) or .npz "
                         f"(key 'clouds'), not {_ext(path) or '(no extension)'!r}")
    return check_output_path(path)


def write_clouds(path, clouds: np.ndarray, *, labels=None) -> None:
    """Write ``clouds`` to ``.npy``, or to ``.npz`` under ``clouds`` (and ``labels`` when given),
    all or nothing."""
    path = check_cloud_output(path)
    with atomic_write(path, "wb") as fh:  # a file object: numpy appends no extension to the name
        if _ext(path) == ".npy":
            np.save(fh, clouds, allow_pickle=False)
        else:
            extra = {} if labels is None else {LABELS: np.asarray(labels)}
            np.savez(fh, clouds=clouds, **extra)
