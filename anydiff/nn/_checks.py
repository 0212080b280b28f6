"""Argument checks shared by the embeddings and the networks.

Every check here looks only at shapes and dtypes (static under ``torch.compile`` and CUDA-graph
capture), except :func:`check_labels`, which reads label values and therefore skips itself while a
graph is being compiled or captured.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

from .._utils import check_int

__all__ = [
    "check_choice",
    "check_data",
    "check_dropout",
    "check_labels",
    "check_positive_int",
    "check_rows",
    "check_time",
    "values_checkable",
]


def check_positive_int(value: int | None, name: str, optional: bool = False) -> int | None:
    """Return ``value`` if it is an int >= 1 (or None when ``optional``); else ValueError."""
    if optional and value is None:
        return None
    return check_int(value, name)


def check_dropout(dropout: float) -> float:
    """Return ``dropout`` if it is a probability in [0, 1), else raise ``ValueError``."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
            or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be a probability in [0, 1)")
    return float(dropout)


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {list(choices)}")
    return value


def check_data(x_t: Tensor, ndim: int, size: int, size_name: str, layout: str) -> None:
    """Check that ``x_t`` is a floating tensor with ``ndim`` dims whose last dim is ``size``.

    Parameters
    ----------
    x_t : Tensor, expected shape ``layout`` (e.g. ``"(B, D)"``).
    ndim : int, the required number of dimensions.
    size : int, the required size of the last dimension.
    size_name : str, the constructor argument that fixed ``size`` (named in the message).
    layout : str, the expected shape written out, for the message.
    """
    if not torch.is_tensor(x_t) or not x_t.is_floating_point():
        raise ValueError(f"x_t must be a floating-point tensor of shape {layout}")
    if x_t.ndim != ndim:
        raise ValueError(
            f"x_t must have shape {layout}, got {tuple(x_t.shape)}; "
            + ("add a token dimension, e.g. x_t[:, None, :]" if x_t.ndim == ndim - 1
               else "reshape it")
        )
    if x_t.shape[-1] != size:
        raise ValueError(
            f"x_t has last dimension {x_t.shape[-1]} but the model was built with "
            f"{size_name}={size}; build it with {size_name}={x_t.shape[-1]}"
        )


def check_time(t: Tensor | float, batch_size: int | None, device: torch.device | None) -> Tensor:
    """Return ``t`` as a float32 tensor of shape ``(B,)``, broadcasting a scalar.

    Parameters
    ----------
    t : Tensor of shape (B,) or (), or a Python number; continuous time in [0, 1].
    batch_size : int or None; B. None takes it from ``t`` (a scalar then gives shape (1,)).
    device : the device for a Python-number ``t`` (None: CPU).

    Returns
    -------
    Tensor, shape (B,), float32.
    """
    if isinstance(t, numbers.Real) and not isinstance(t, bool):
        n = 1 if batch_size is None else batch_size
        return torch.full((n,), float(t), dtype=torch.float32, device=device)
    if not torch.is_tensor(t) or not t.is_floating_point():
        raise ValueError("t must be a float tensor of shape (B,) or a scalar; "
                         "pass t = k / T for step k")
    if t.ndim == 0:
        return t.to(torch.float32).expand(1 if batch_size is None else batch_size)
    if t.ndim != 1 or (batch_size is not None and t.shape[0] != batch_size):
        raise ValueError(
            f"t must have shape ({batch_size if batch_size is not None else 'B'},) or be a scalar, "
            f"got {tuple(t.shape)}; give one time per sample of x_t"
        )
    return t.to(torch.float32)


def values_checkable(x: Tensor) -> bool:
    """Whether reading the values of ``x`` on the host is allowed (not compiling or capturing)."""
    compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling
    if compiling():
        return False
    return not (x.is_cuda and torch.cuda.is_current_stream_capturing())


def check_labels(labels: Tensor, batch_size: int, num_classes: int) -> None:
    """Check integer class labels of shape (B,) with values in ``[-1, num_classes)``.

    The value check synchronises with the device, so it is skipped under ``torch.compile`` and
    CUDA-graph capture (validate the labels once, before the training loop, in that case).
    """
    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.is_complex() \
            or labels.dtype == torch.bool:
        raise ValueError("cond must be an integer tensor of class labels (use labels.long())")
    if labels.shape != (batch_size,):
        raise ValueError(f"cond (class labels) must have shape ({batch_size},), "
                         f"got {tuple(labels.shape)}")
    if values_checkable(labels) and labels.numel() > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < -1 or hi >= num_classes:
            raise ValueError(
                f"cond holds class labels in [{lo}, {hi}] but must lie in [-1, {num_classes}) "
                f"for num_classes={num_classes} (-1 is the null class)"
            )


def check_rows(x: Tensor, name: str, batch_size: int, width: int | None = None) -> None:
    """Check that ``x`` is a tensor of shape ``(batch_size,)`` or ``(batch_size, width)``."""
    shape = (batch_size,) if width is None else (batch_size, width)
    if not torch.is_tensor(x) or tuple(x.shape) != shape:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape {shape}, got {got}")
