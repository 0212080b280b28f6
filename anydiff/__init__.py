"""anydiff: diffusion models for non-image data."""
from . import losses, nn, oracles, parameterization, process, schedules, timesteps
from .likelihood import log_likelihood
from .parameterization import convert
from .sampling import encode, sample
from .schedules import Schedule
from .training import Trainer

__version__ = "0.1.0"

__all__ = ["Schedule", "schedules", "convert", "sample", "encode", "log_likelihood", "oracles",
           "parameterization", "process", "timesteps", "losses", "nn", "Trainer", "__version__"]
