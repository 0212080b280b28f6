"""Small helpers shared by every layer: broadcasting, randomness, argument checks, safe writes."""
from __future__ import annotations

import contextlib
import numbers
import os
import tempfile
import warnings

import torch
from torch import Tensor

__all__ = ["append_dims", "as_generator", "check_time", "check_finite", "resolve_device", "check_output_path",
           "atomic_write"]


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to ``x`` until it has ``ndim`` dimensions.

    A per-sample coefficient of shape ``(B,)`` becomes ``(B, 1, ..., 1)`` so that it
    broadcasts against data of shape ``(B, *event_shape)``, whatever the event shape.
    """
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *((1,) * missing))


def check_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) >= ``minimum``; else a
    ``ValueError`` that names the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}={value!r} must be {wanted}")
    return int(value)


def resolve_device(device: str | torch.device | None = "auto", *, fallback: bool = False) -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else CPU; anything else is passed to torch.

    A CUDA or MPS device that this torch cannot use raises ``ValueError``, or with ``fallback=True``
    (loading a model saved on a GPU) warns and returns the CPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'") from exc
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(dev.type, lambda: True)
    if not available():
        if fallback:
            warnings.warn(f"device={str(device)!r} is not available here; using the CPU", stacklevel=3)
            return torch.device("cpu")
        raise ValueError(f"device={str(device)!r}, but this torch ({torch.__version__}) has no usable "
                         f"{dev.type.upper()} device; use device='cpu' or 'auto'")
    return dev


def check_output_path(path) -> str:
    """Check, before any long work, that ``path`` can be written: its folder exists and is
    writable, and ``path`` is not a folder. Returns ``path`` as a string."""
    path = os.fspath(path)
    if not path:
        raise ValueError("the output path is empty; name a file to write")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{path}: the folder {directory} does not exist; create it or write elsewhere")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; name a file to write")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"{path}: the folder {directory} is not writable")
    return path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", **open_kwargs):
    """Write ``path`` all or nothing: yield a temporary file in the same folder and rename it over
    ``path`` only when the block finishes. On any error (a full disk, a file-size limit, Ctrl-C)
    the temporary file is removed and an existing ``path`` is left exactly as it was."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def as_generator(random_state=None, device: str | torch.device = "cpu") -> torch.Generator:
    """Turn ``random_state`` (None, an int, a ``torch.Generator``, or numpy's ``Generator`` /
    ``RandomState``) into a ``torch.Generator``.

    None draws a fresh seed from torch's global generator, so the result is random but still
    an explicit generator that can be passed on. A numpy generator gives one seed (and advances).
    """
    import numpy as np

    device = torch.device(device)
    if isinstance(random_state, torch.Generator):
        return random_state
    if random_state is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**62))
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(np.iinfo(np.int32).max))
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(f"random_state={seed} must be a non-negative integer")
    else:
        raise ValueError(
            f"random_state={random_state!r} must be None, a non-negative int, a torch.Generator or a "
            "numpy Generator / RandomState"
        )
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``x`` holds NaN or infinity."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; clean or impute it first")


def check_time(t, name: str = "t") -> Tensor:
    """Validate continuous time: a finite float tensor with every value in [0, 1]."""
    if not torch.is_tensor(t):
        raise ValueError(f"{name} must be a float torch.Tensor of times in [0, 1], got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (times in [0, 1]); got dtype {t.dtype}. "
                         "For step k of a T-step schedule pass k / T")
    check_finite(t, name)
    if t.numel() and (float(t.min()) < 0.0 or float(t.max()) > 1.0):
        raise ValueError(f"{name} must lie in [0, 1] (data at 0, prior at 1); got values in "
                         f"[{float(t.min()):.4g}, {float(t.max()):.4g}]")
    return t
