"""anydiff: diffusion models for non-image data.

Submodules and the names below are imported on first use, so ``import anydiff`` (and the
``anydiff`` command's start, where Ctrl-C must already be handled) loads neither torch nor
scikit-learn until they are needed.
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = ("datasets", "estimators", "io", "latent", "likelihood", "losses", "metrics", "nn", "oracles",
               "parameterization", "plot", "points", "poses", "process", "sampling", "schedules", "tabular",
               "timesteps", "training")
_NAMES = {  # public name -> the submodule that defines it
    "Schedule": "schedules", "convert": "parameterization", "sample": "sampling", "encode": "sampling",
    "log_likelihood": "likelihood", "Trainer": "training", "VectorDiffusion": "estimators", "load": "io",
    "TabularDiffusion": "tabular", "PointCloudDiffusion": "points", "PoseDiffusion": "poses",
}

__all__ = ["Schedule", "schedules", "convert", "sample", "encode", "log_likelihood", "oracles",
           "parameterization", "process", "timesteps", "losses", "nn", "datasets", "metrics", "Trainer",
           "VectorDiffusion", "TabularDiffusion", "PointCloudDiffusion", "PoseDiffusion", "tabular", "points",
           "poses", "load", "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'anydiff' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_NAMES))
