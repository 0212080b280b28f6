"""anydiff: diffusion models for non-image data."""
from . import datasets, losses, metrics, nn, oracles, parameterization, process, schedules, timesteps
from .likelihood import log_likelihood
from .parameterization import convert
from .sampling import encode, sample
from .schedules import Schedule
from .training import Trainer


def __getattr__(name):
    """Estimators and load need scikit-learn / safetensors: imported on first use."""
    if name == "VectorDiffusion":
        from .estimators import VectorDiffusion

        return VectorDiffusion
    if name == "load":
        from .io import load

        return load
    if name == "plot":  # matplotlib is optional
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module 'anydiff' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = ["Schedule", "schedules", "convert", "sample", "encode", "log_likelihood", "oracles",
           "parameterization", "process", "timesteps", "losses", "nn", "datasets", "metrics", "Trainer", "VectorDiffusion", "load", "__version__"]
