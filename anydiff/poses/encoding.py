"""The pose adapter: ``xarray.Dataset`` of pose parts <-> flat standardized vectors, both ways.

Each variable of the Dataset is one part of a pose, its kind in ``attrs["kind"]``, its first
dimension ``sample``:

* ``"position"``: any numbers (positions, keypoints, a condition's features), standardized.
* ``"quaternion"``: unit quaternions, last axis ``(w, x, y, z)``; ``q`` and ``-q`` are one rotation.
* ``"rotation_matrix"``: rotation matrices, last two axes ``(3, 3)``.
* ``"angle"``: radians. With ``attrs["limits"] = (low, high)`` spanning less than a turn (a revolute
  joint with stops) the angle is scaled to [-1, 1] inside its limits; without limits, or limits
  of a full turn or more, it wraps and is encoded as ``(cos, sin)``.

Rotations (either form) are diffused in the continuous 6-D representation (Zhou et al. 2019, the
first two columns of the matrix) and decoded by Gram-Schmidt, never through Euler angles. All
encoded features are then standardized. Decoding is torch and differentiable, so guidance
energies can be written on the decoded pose.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from .rotations import (check_quaternions, check_rotation_matrices, matrix_to_quaternion, matrix_to_sixd,
                        quaternion_to_matrix, sixd_to_matrix)

__all__ = ["KINDS", "PoseEncoder", "as_dataset"]

KINDS = ("position", "quaternion", "rotation_matrix", "angle")
SAMPLE_DIM = "sample"
_TURN = 2 * math.pi


def _xarray():
    try:
        import xarray
    except ImportError as err:  # pragma: no cover - xarray comes with anydiff[poses]
        raise ImportError("poses need xarray: pip install 'anydiff[poses]'") from err
    return xarray


def _json_value(value):
    """``value`` (numpy scalars and arrays included) as plain JSON data."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def as_dataset(X, name: str, *, kind: str | None = None, default_kind: str | None = None):
    """``X`` as a Dataset with ``sample`` first: a Dataset as it is, or an array (torch, numpy,
    nested lists) of shape ``(n_samples, ...)`` as one variable called ``name`` of kind ``kind``
    (``default_kind`` when None; a ValueError when both are None)."""
    xr = _xarray()
    if isinstance(X, xr.DataArray):
        X = X.to_dataset(name=X.name or name)
    if isinstance(X, xr.Dataset):
        if kind is not None:
            raise ValueError(f"kind={kind!r} applies to a plain array; the variables of the Dataset {name} "
                             "carry their kinds in attrs['kind']")
        if not X.data_vars:
            raise ValueError(f"{name} is a Dataset without variables; give at least one pose part")
        return X
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X)
    except Exception as err:
        raise ValueError(f"{name} must be an xarray.Dataset or a numeric array: {err}") from err
    kind = kind if kind is not None else default_kind
    if kind is None:
        raise ValueError(f"{name} is a plain array: say what it holds with kind= (one of {KINDS}), "
                         "or pass an xarray.Dataset whose variables carry attrs['kind']")
    if arr.ndim < 1:
        raise ValueError(f"{name} must have a first axis of samples, got a scalar")
    dims = (SAMPLE_DIM,) + tuple(f"{name}_dim_{i}" for i in range(1, arr.ndim))
    return xr.Dataset({name: (dims, arr, {"kind": kind})})


@dataclass
class Part:
    """One variable: its kind, its dims and coordinates after ``sample``, and its slice of the
    encoded vector."""

    name: str
    kind: str
    dims: list
    shape: list
    coords: dict
    attrs: dict
    limits: list | None
    wrap: bool
    offset: int = 0
    width: int = 0

    @property
    def n_items(self) -> int:
        """Rotations, angles or numbers in one sample (what the encoding works on)."""
        core = {"quaternion": 1, "rotation_matrix": 2}.get(self.kind, 0)
        return int(np.prod(self.shape[:len(self.shape) - core])) if core else int(np.prod(self.shape))

    @property
    def per_item(self) -> int:
        """Encoded features per item."""
        return {"quaternion": 6, "rotation_matrix": 6, "angle": 2 if self.wrap else 1}.get(self.kind, 1)


def _limits(attrs: dict, name: str, shape: list) -> list | None:
    """``attrs["limits"]`` as ``(*shape, 2)`` nested lists: one ``(low, high)`` pair for the whole
    variable or one per angle (a robot's joints)."""
    limits = attrs.get("limits")
    if limits is None:
        return None
    try:
        arr = np.broadcast_to(np.asarray(limits, dtype=np.float64), (*shape, 2))
    except (TypeError, ValueError) as err:
        raise ValueError(f"variable {name!r}: attrs['limits'] must be (low, high) in radians, or one such pair per "
                         f"angle (shape {(*shape, 2)}), got {np.shape(limits)}") from err
    low, high = arr[..., 0], arr[..., 1]
    if not (np.isfinite(arr).all() and (low < high).all()):
        raise ValueError(f"variable {name!r}: attrs['limits'] must be finite with low < high, got {limits!r}")
    span = high - low
    if (span >= _TURN - 1e-9).any() and (span < _TURN - 1e-9).any():
        raise ValueError(f"variable {name!r} mixes angles that wrap (limits of a full turn) with limited ones; "
                         "put them in two variables")
    return arr.tolist()


def _checked_values(part: Part, values: np.ndarray, where: str) -> np.ndarray:
    """The variable's values as float64, checked for its kind (a ValueError naming it)."""
    label = f"{where} variable {part.name!r}"
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{label} must hold numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise ValueError(f"{label} holds NaN or infinite values (sample {row}); repair or drop those samples")
    if part.kind == "quaternion":
        return check_quaternions(values, label)
    if part.kind == "rotation_matrix":
        return check_rotation_matrices(values, label)
    if part.kind == "angle" and part.limits is not None and not part.wrap:
        low, high = np.moveaxis(np.asarray(part.limits), -1, 0)
        bad = (values < low - 1e-9) | (values > high + 1e-9)
        if bad.any():
            at = tuple(np.argwhere(bad)[0])
            lo, hi = (np.broadcast_to(b, values.shape[1:])[at[1:]] for b in (low, high))
            raise ValueError(f"{label} holds angles outside its limits [{lo:g}, {hi:g}] (sample {at[0]}, value "
                             f"{values[at]:g} rad); fix the data or widen attrs['limits']")
        return np.clip(values, low, high)
    return values


def _part_of(ds, name: str, where: str) -> Part:
    var = ds[name]
    kind = var.attrs.get("kind")
    if kind is None:
        raise ValueError(f"{where} variable {name!r} has no attrs['kind']; set it to one of {KINDS}")
    if kind not in KINDS:
        raise ValueError(f"{where} variable {name!r} has attrs['kind'] = {kind!r}; use one of {KINDS}")
    if not var.dims or var.dims[0] != SAMPLE_DIM:
        raise ValueError(f"{where} variable {name!r} has dims {var.dims}; its first dim must be "
                         f"{SAMPLE_DIM!r} (transpose it: ds[{name!r}].transpose('sample', ...))")
    shape = [int(s) for s in var.shape[1:]]
    needs = {"quaternion": ([4], "(..., 4) in the order (w, x, y, z)"),
             "rotation_matrix": ([3, 3], "(..., 3, 3)")}.get(kind)
    if needs and shape[len(shape) - len(needs[0]):] != needs[0]:
        raise ValueError(f"{where} variable {name!r} of kind {kind!r} must have shape (sample, {needs[1][1:]}, "
                         f"got {tuple(var.shape)}")
    limits = _limits(var.attrs, name, shape) if kind == "angle" else None
    wrap = kind == "angle" and (limits is None or float(np.ptp(np.asarray(limits), axis=-1).min()) >= _TURN - 1e-9)
    coords = {d: _json_value(np.asarray(ds[d].values)) for d in var.dims[1:] if d in ds.coords}
    attrs = {k: _json_value(v) for k, v in var.attrs.items()}
    return Part(name, kind, list(var.dims[1:]), shape, coords, attrs, limits, wrap)


class PoseEncoder:
    """Fitted on a Dataset: encodes such Datasets to standardized ``(n, width)`` arrays and decodes
    those back to pose parts (torch, differentiable) or to a Dataset."""

    def __init__(self, parts: list[Part], mean: np.ndarray, scale: np.ndarray, where: str):
        self.parts, self.mean, self.scale, self.where = parts, mean, scale, where
        self.width = int(sum(p.width for p in parts))

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit_encode(cls, ds, where: str) -> tuple["PoseEncoder", np.ndarray]:
        """The encoder fitted on ``ds`` and ``ds`` encoded, its values checked once."""
        parts, offset = [], 0
        for name in ds.data_vars:
            part = _part_of(ds, str(name), where)
            part.offset, part.width = offset, part.n_items * part.per_item
            offset += part.width
            parts.append(part)
        enc = cls(parts, np.zeros(offset), np.ones(offset), where)
        raw = enc._features(enc.check(ds))
        scale = raw.std(axis=0)
        enc.mean = raw.mean(axis=0)
        enc.scale = np.where(scale > 1e-6 * np.maximum(np.abs(enc.mean), 1.0), scale, 1.0)
        return enc, (raw - enc.mean) / enc.scale

    @classmethod
    def fit(cls, ds, where: str) -> "PoseEncoder":
        return cls.fit_encode(ds, where)[0]

    def n_rows(self, ds) -> int:
        return int(ds.sizes[SAMPLE_DIM]) if SAMPLE_DIM in ds.sizes else 0

    def check(self, ds):
        """The variables of ``ds`` as checked float64 arrays ``{name: (n, *shape)}``; ``ds`` must
        hold the fitted variables with their kinds and shapes (extra variables are ignored)."""
        out = {}
        for part in self.parts:
            if part.name not in ds.data_vars:
                raise ValueError(f"{self.where} lacks the variable {part.name!r} seen in fit; it has "
                                 f"{sorted(map(str, ds.data_vars))}")
            seen = _part_of(ds, part.name, self.where)
            if (seen.kind, seen.shape) != (part.kind, part.shape):
                raise ValueError(f"{self.where} variable {part.name!r} is {seen.kind} of shape {tuple(seen.shape)}; "
                                 f"in fit it was {part.kind} of shape {tuple(part.shape)}")
            out[part.name] = _checked_values(part, np.asarray(ds[part.name].values), self.where)
        return out

    def _features(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Unstandardized features ``(n, width)`` of checked values (:meth:`check`)."""
        n = len(values[self.parts[0].name])
        cols = []
        for part in self.parts:
            v = torch.from_numpy(values[part.name])
            if part.kind == "quaternion":
                v = matrix_to_sixd(quaternion_to_matrix(v))
            elif part.kind == "rotation_matrix":
                v = matrix_to_sixd(v)
            elif part.kind == "angle" and part.wrap:
                v = torch.stack([torch.cos(v), torch.sin(v)], dim=-1)
            elif part.kind == "angle":
                low, high = torch.from_numpy(np.asarray(part.limits)).unbind(-1)
                v = 2 * (v - low) / (high - low) - 1
            cols.append(v.reshape(n, -1).numpy())
        return np.concatenate(cols, axis=1)

    def encode(self, ds, values: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """``(n, width)`` standardized features of a Dataset with the fitted variables (``values``:
        its variables already checked by :meth:`check`, so that they are not checked twice)."""
        return (self._features(self.check(ds) if values is None else values) - self.mean) / self.scale

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Standardized features ``(B, width)`` -> ``{name: (B, *shape)}`` in the data's units:
        unit quaternions (w >= 0), rotation matrices, angles inside their limits. Differentiable."""
        mean = torch.as_tensor(self.mean, dtype=z.dtype, device=z.device)
        scale = torch.as_tensor(self.scale, dtype=z.dtype, device=z.device)
        f = z * scale + mean
        out = {}
        for part in self.parts:
            v = f[:, part.offset:part.offset + part.width].reshape(z.shape[0], part.n_items, part.per_item)
            if part.kind in ("quaternion", "rotation_matrix"):
                R = sixd_to_matrix(v)
                v = matrix_to_quaternion(R) if part.kind == "quaternion" else R
            elif part.kind == "angle":
                v = torch.atan2(v[..., 1], v[..., 0]) if part.wrap else torch.clamp(v[..., 0], -1, 1)
                if part.limits is not None:
                    low, high = torch.as_tensor(part.limits, dtype=z.dtype, device=z.device).unbind(-1)
                    v = v.reshape(z.shape[0], *part.shape)
                    # a full turn or more: into [low, low + 2 pi); limited: [-1, 1] -> [low, high]
                    v = low + torch.remainder(v - low, _TURN) if part.wrap else low + (v + 1) * (high - low) / 2
            out[part.name] = v.reshape(z.shape[0], *part.shape)
        return out

    def to_dataset(self, values: dict[str, np.ndarray], sample_coord=None, n_hypotheses: int = 1):
        """A Dataset of arrays ``{name: (n * H, *shape)}``, with a ``hypothesis`` dim after
        ``sample`` when ``n_hypotheses > 1``; the fitted coordinates and attrs are restored."""
        xr = _xarray()
        data_vars, coords = {}, {}
        for part in self.parts:
            v = values[part.name]
            lead = (SAMPLE_DIM,)
            if n_hypotheses > 1:
                v = v.reshape(-1, n_hypotheses, *part.shape)
                lead = (SAMPLE_DIM, "hypothesis")
            data_vars[part.name] = (lead + tuple(part.dims), v, dict(part.attrs))
            coords.update({d: c for d, c in part.coords.items()})
        if sample_coord is not None:
            coords[SAMPLE_DIM] = sample_coord
        return xr.Dataset(data_vars, coords=coords)

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        return ({"parts": [asdict(p) for p in self.parts], "where": self.where},
                {"mean": torch.from_numpy(self.mean), "scale": torch.from_numpy(self.scale)})

    @classmethod
    def from_state(cls, meta: dict, tensors: dict) -> "PoseEncoder":
        parts = [Part(**p) for p in meta["parts"]]
        return cls(parts, tensors["mean"].double().numpy(), tensors["scale"].double().numpy(), meta["where"])
