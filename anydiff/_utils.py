"""Small helpers shared by every layer: broadcasting, randomness, argument checks."""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["append_dims", "as_generator", "check_time", "check_finite", "resolve_device"]


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to ``x`` until it has ``ndim`` dimensions.

    A per-sample coefficient of shape ``(B,)`` becomes ``(B, 1, ..., 1)`` so that it
    broadcasts against data of shape ``(B, *event_shape)``, whatever the event shape.
    """
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *((1,) * missing))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else CPU; anything else is passed to torch."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'") from exc


def as_generator(random_state=None, device: str | torch.device = "cpu") -> torch.Generator:
    """Turn ``random_state`` (None, an int, or a ``torch.Generator``) into a ``torch.Generator``.

    None draws a fresh seed from torch's global generator, so the result is random but still
    an explicit generator that can be passed on.
    """
    device = torch.device(device)
    if isinstance(random_state, torch.Generator):
        return random_state
    if random_state is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(f"random_state={seed} must be a non-negative integer")
    else:
        raise ValueError(
            f"random_state={random_state!r} must be None, a non-negative int or a torch.Generator"
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
