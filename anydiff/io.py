"""Saving and loading fitted estimators: one safetensors file, never a pickle.

The file holds the network weights and the fitted preprocessing as tensors, and in its header
(safetensors' string metadata) the format name and version, the estimator's class, its
parameters and its other fitted attributes as JSON. Loading reads only tensors and JSON, so a
tampered or foreign file can fail to load but cannot run code.
"""
from __future__ import annotations

import importlib
import json
import os

from ._utils import atomic_write

__all__ = ["save", "load", "register", "FORMAT", "FORMAT_VERSION"]

FORMAT = "anydiff"
FORMAT_VERSION = 2  # 2: TabularDiffusion time embedding 64 wide (its files of version 1 do not fit)

_ESTIMATORS: dict[str, type] = {}  # class name -> class; filled by the estimator base


def register(cls: type) -> type:
    """Make ``cls`` savable and loadable under its class name (the estimator base calls this for
    every subclass). The file records the class's module, which :func:`load` imports when the
    class is not registered yet, but only inside the anydiff package."""
    _ESTIMATORS[cls.__name__] = cls
    return cls


def _estimator_class(name, module) -> type | None:
    if name not in _ESTIMATORS and isinstance(module, str) and (module == "anydiff" or module.startswith("anydiff.")):
        try:
            importlib.import_module(module)
        except ImportError:
            return None
    return _ESTIMATORS.get(name)


def _json_params(estimator) -> dict:
    params = estimator.get_params()
    rs = params.get("random_state")
    if rs is not None and not isinstance(rs, int):
        params["random_state"] = None  # a RandomState instance has no faithful JSON form
    return params


def save(estimator, path) -> None:
    """Write a fitted estimator to ``path`` atomically (a temporary file, then a rename).

    Raises ``ValueError`` naming the path if its folder does not exist or is not writable.
    """
    from safetensors.torch import save as to_bytes

    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise ValueError(f"cannot save a {name}; savable estimators: {sorted(_ESTIMATORS)}")
    meta, tensors = estimator._fitted_state()
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "estimator": name,
              "module": type(estimator).__module__,
              "params": json.dumps(_json_params(estimator)), "fitted": json.dumps(meta)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = to_bytes(tensors, metadata=header)
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def load(path):
    """Rebuild an estimator saved with ``estimator.save(path)``.

    Raises
    ------
    ValueError
        If the file is missing, not a safetensors file (a pickle, a truncated file), not written
        by anydiff, of another format version, or inconsistent with its own header.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such model file")
    try:
        with safe_open(path, framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ValueError(f"{path} is not an anydiff model file (not a readable safetensors file: {exc})") from exc
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an anydiff model (no anydiff header)")
    if header.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(f"{path} has anydiff format version {header.get('format_version')!r}; "
                         f"this anydiff reads version {FORMAT_VERSION}")
    cls = _estimator_class(header.get("estimator"), header.get("module", "anydiff.estimators"))
    if cls is None:
        raise ValueError(f"{path} holds an unknown estimator {header.get('estimator')!r}")
    try:
        params, meta = json.loads(header["params"]), json.loads(header["fitted"])
        estimator = cls(**params)
        estimator._validate_params()
        estimator._restore(meta, tensors)
    except (KeyError, TypeError, json.JSONDecodeError, RuntimeError) as exc:
        raise ValueError(f"{path}: the model file is inconsistent or damaged ({exc})") from exc
    return estimator
