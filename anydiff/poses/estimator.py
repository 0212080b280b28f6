"""PoseDiffusion: a diffusion model of poses (rotations, joint angles, positions) behind ``fit`` /
``sample``, conditioned on what a pipeline observes and guided by its own constraints.

The adapter (:mod:`anydiff.poses.encoding`) turns an ``xarray.Dataset`` of pose parts into flat
standardized vectors (rotations in the 6-D representation, wrapping angles as (cos, sin), limited
ones scaled inside their limits); a residual MLP, conditioned on the encoded ``cond`` through
FiLM, denoises them with the estimator base's training run. Sampling draws ``n_hypotheses``
poses per condition and decodes them back into a Dataset: unit quaternions, rotation matrices,
angles inside their limits. ``guidance`` is an energy on the decoded pose (a forward-kinematics
error, a reprojection error) that the sampler follows down its gradient.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ..estimators import DiffusionEstimator
from ..nn import ResidualMLP
from .encoding import SAMPLE_DIM, PoseEncoder, as_dataset
from .metrics import aggregate_angles, aggregate_positions, aggregate_rotations
from .rotations import matrix_to_quaternion, quaternion_to_matrix

__all__ = ["PoseDiffusion", "aggregate"]

AGGREGATIONS = ("mean", "median", "medoid")


class PoseDiffusion(DiffusionEstimator):
    """A conditional diffusion model of poses with a scikit-learn-style interface.

    Parameters
    ----------
    max_steps : int, default=5000, training iterations.
    batch_size : int, default=512.
    learning_rate : float, default=2e-3, peak AdamW learning rate (warm-up, cosine decay).
    hidden, depth, dropout : int, int, float, default=256, 4, 0.0; the residual MLP.
    fourier_features : int, default=0; periodic features of each encoded coordinate
        (:class:`anydiff.nn.FourierFeatures`), 0 for none.
    fourier_scale : float, default=0.5.
    prediction : {"v", "eps", "x0"}, default="v".
    schedule : {"cosine", "linear", "sigmoid"}, default="cosine".
    n_timesteps : int, default=1000.
    sampler : str, default="dpmpp_2m_sde"; sampling_steps : int, default=20;
    timesteps : str, default="logsnr". The benchmarks (README, "Poses") sample with these
        20 steps of SDE-DPM-Solver++(2M): 20 model evaluations per pose.
    ema_decay : float, default=0.999.
    reference_batch : int, default=512; the stable target field (Xu et al. 2023) for models
        without ``cond`` (it needs discrete conditions or none, so a model fitted with ``cond``
        trains on the plain targets).
    device : str, default="auto"; random_state : int, RandomState, Generator or None;
    verbose : bool, default=False.

    Attributes
    ----------
    encoder_ : the fitted pose adapter (:class:`anydiff.poses.encoding.PoseEncoder`).
    cond_encoder_ : the condition's adapter, or None for an unconditional model.
    model_, schedule_, loss_curve_, n_iter_ : as for every estimator.
    """

    _parameter_constraints = {
        **DiffusionEstimator._parameter_constraints,
        "fourier_features": [Interval(Integral, 0, None, closed="left")],
        "fourier_scale": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, max_steps: int = 5000, batch_size: int = 512, learning_rate: float = 2e-3,
                 hidden: int = 256, depth: int = 4, dropout: float = 0.0, fourier_features: int = 0,
                 fourier_scale: float = 0.5, prediction: str = "v", schedule: str = "cosine",
                 n_timesteps: int = 1000, sampler: str = "dpmpp_2m_sde", sampling_steps: int = 20,
                 timesteps: str = "logsnr", ema_decay: float = 0.999, reference_batch: int = 512,
                 device: str = "auto", random_state=None, verbose: bool = False):
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden = hidden
        self.depth = depth
        self.dropout = dropout
        self.fourier_features = fourier_features
        self.fourier_scale = fourier_scale
        self.prediction = prediction
        self.schedule = schedule
        self.n_timesteps = n_timesteps
        self.sampler = sampler
        self.sampling_steps = sampling_steps
        self.timesteps = timesteps
        self.ema_decay = ema_decay
        self.reference_batch = reference_batch
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- what the base needs ------------------------------------------------------------------
    def _network(self) -> ResidualMLP:
        cond_dim = None if self.cond_encoder_ is None else self.cond_encoder_.width
        return ResidualMLP(self.encoder_.width, hidden=self.hidden, depth=self.depth, dropout=self.dropout,
                           fourier_features=self.fourier_features, fourier_scale=float(self.fourier_scale),
                           cond_dim=cond_dim)

    def _event_shape(self) -> tuple[int, ...]:
        return (self.encoder_.width,)

    # -- fitting -------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, cond=None, *, kind: str | None = None):
        """Fit on poses ``X`` and optional per-sample conditions ``cond``.

        Parameters
        ----------
        X : xarray.Dataset whose variables are pose parts, first dim ``sample``, each with
            ``attrs["kind"]`` in ``"position" | "quaternion" | "rotation_matrix" | "angle"``
            (angles: optional ``attrs["limits"] = (low, high)`` in radians); or an array
            ``(n_samples, ...)`` with ``kind=``.
        cond : None, a Dataset of the same form, or any numeric array ``(n_samples, ...)``
            (standardized as numbers); one row per sample of X.
        kind : the kind of a plain-array X.
        """
        ds = as_dataset(X, "X", kind=kind)
        self.classes_ = None
        self.input_is_array_ = not _is_dataset(X)
        self.encoder_, Z = PoseEncoder.fit_encode(ds, "X")
        n = len(Z)
        if n < 2:
            raise ValueError(f"X has {n} samples; fit needs at least 2")
        C = None
        self.cond_encoder_, self.cond_is_array_ = None, False
        if cond is not None:
            self.cond_is_array_ = not _is_dataset(cond)
            cds = as_dataset(cond, "cond", default_kind="position")
            self.cond_encoder_, C = PoseEncoder.fit_encode(cds, "cond")
            if len(C) != n:
                raise ValueError(f"cond has {len(C)} rows but X has {n} samples; give one condition per sample")
        self._train(Z, C)
        return self

    def distill(self, X, cond=None, *, kind: str | None = None, steps: int = 8, teacher_steps: int = 128,
                steps_per_round: int = 1000):
        """Train few-step students by progressive distillation (Salimans & Ho 2022;
        :mod:`anydiff.distill`) on the poses (and conditions) the model was fitted on:
        ``teacher_steps`` DDIM steps halved down to ``steps``, ``steps_per_round`` optimizer steps
        per halving. They are kept in ``students_``, saved with the model and used by
        ``sample(..., steps=k)``. Returns self."""
        check_is_fitted(self)
        if (cond is None) != (self.cond_encoder_ is None):
            raise ValueError("distill needs the data the model was fitted on: give cond exactly when fit had cond")
        Z = self.encoder_.encode(as_dataset(X, "X", kind=kind))
        C = None
        if cond is not None:
            cds = as_dataset(cond, "cond", default_kind="position")
            if self.cond_encoder_.n_rows(cds) != len(Z):
                raise ValueError(f"cond has {self.cond_encoder_.n_rows(cds)} rows but X has {len(Z)} samples")
            C = self.cond_encoder_.encode(cds)
        self._distill(Z, C, steps=steps, teacher_steps=teacher_steps, steps_per_round=steps_per_round)
        return self

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n_samples: int | None = None, *, cond=None, n_hypotheses: int = 1, guidance=None,
               guidance_scale: float = 1.0, random_state=None, chunk_size: int = 65536, steps: int | None = None):
        """Draw poses, ``n_hypotheses`` per condition.

        Parameters
        ----------
        n_samples : int; the number of samples of an unconditional model. With ``cond`` it is
            the number of rows of cond (giving it too is allowed if it agrees).
        cond : the conditions, in the form given to ``fit`` (a Dataset with the same variables,
            or an array of the same trailing shape); needed by a model fitted with cond.
        n_hypotheses : int, poses drawn per condition (a ``hypothesis`` dim when > 1).
        guidance : callable ``guidance(pose, cond) -> (B,)`` energies, or None. ``pose`` is a dict
            ``{variable: Tensor (B, *shape)}`` of decoded poses in the data's units (unit
            quaternions, rotation matrices, angles in radians), ``cond`` the matching rows of the
            condition (a dict of tensors, or a tensor for an array cond; None without), B rows
            ordered sample-major (row ``i * n_hypotheses + h``). It must be differentiable
            torch; the sampler steps down its gradient (:class:`anydiff.sampling.Denoiser`,
            ``energy_gradient="x0"``) at every model call.
        guidance_scale : float >= 0, the step on the energy's gradient with respect to the
            standardized encoding.
        random_state : int, Generator or None.
        steps : int, optional; the distilled student of that many steps (:meth:`distill`), else
            the sampler with that many steps (default ``sampling_steps``).

        Returns
        -------
        xarray.Dataset with the fitted variables, dims (``sample``, [``hypothesis``], ...),
        coordinates and attrs; an ndarray ``(n, [H,] ...)`` if fit was given a plain array.
        """
        check_is_fitted(self)
        if isinstance(n_hypotheses, bool) or not isinstance(n_hypotheses, Integral) or n_hypotheses < 1:
            raise ValueError(f"n_hypotheses={n_hypotheses!r} must be a positive integer")
        if guidance is not None and not callable(guidance):
            raise ValueError(f"guidance must be a callable guidance(pose, cond) -> energies, got "
                             f"{type(guidance).__name__}")
        n, cond_t, cond_raw, sample_coord = self._conditions(n_samples, cond)
        H = int(n_hypotheses)
        dev = self._device()
        if cond_t is not None:
            cond_t = cond_t.repeat_interleave(H, dim=0).to(dev)
            cond_raw = {k: v.repeat_interleave(H, dim=0).to(dev) for k, v in cond_raw.items()}

        def energy(z, rows):
            """The user's energy on the decoded poses and their rows of the condition."""
            rows_cond = None
            if cond_raw is not None:
                rows_cond = {k: v[rows].to(z.dtype) for k, v in cond_raw.items()}
                rows_cond = rows_cond["cond"] if self.cond_is_array_ else rows_cond
            return guidance(self.encoder_.decode(z), rows_cond)

        Z = self._generate(n * H, cond=cond_t, energy=None if guidance is None else energy,
                           energy_scale=guidance_scale, random_state=random_state, chunk_size=chunk_size,
                           steps=steps)
        with torch.no_grad():
            values = {k: v.cpu().double().numpy() for k, v in self.encoder_.decode(Z.double()).items()}
        ds = self.encoder_.to_dataset(values, sample_coord=sample_coord, n_hypotheses=H)
        return ds[self.encoder_.parts[0].name].values if self.input_is_array_ else ds

    def _conditions(self, n_samples, cond):
        """``(n, encoded cond or None, raw cond tensors or None, sample coordinate or None)``."""
        if self.cond_encoder_ is None:
            if cond is not None:
                raise ValueError("cond was given but the model was fitted without cond; refit with fit(X, cond)")
            if n_samples is None:
                raise ValueError("n_samples is needed: the model is unconditional")
            if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
                raise ValueError(f"n_samples={n_samples!r} must be a positive integer")
            return int(n_samples), None, None, None
        if cond is None:
            raise ValueError("the model was fitted with cond: give cond (one row per sample to draw)")
        cds = as_dataset(cond, "cond", default_kind="position")
        n = self.cond_encoder_.n_rows(cds)
        if n_samples is not None and n_samples != n:
            raise ValueError(f"n_samples={n_samples!r} but cond has {n} rows; leave n_samples out with cond")
        if n < 1:
            raise ValueError("cond has no rows")
        values = self.cond_encoder_.check(cds)
        raw = {k: torch.from_numpy(v) for k, v in values.items()}
        enc = torch.from_numpy(self.cond_encoder_.encode(cds, values)).float()
        coord = cds[SAMPLE_DIM].values if SAMPLE_DIM in cds.coords else None
        return n, enc, raw, coord

    # -- persistence ---------------------------------------------------------------------------
    def _preprocessing_state(self) -> tuple[dict, dict]:
        meta, tensors = self.encoder_.state()
        meta = {"encoder": meta, "input_is_array": bool(self.input_is_array_),
                "cond_is_array": bool(self.cond_is_array_)}
        tensors = {f"fitted.x_{k}": v for k, v in tensors.items()}
        if self.cond_encoder_ is not None:
            cmeta, ctensors = self.cond_encoder_.state()
            meta["cond_encoder"] = cmeta
            tensors.update({f"fitted.c_{k}": v for k, v in ctensors.items()})
        return meta, tensors

    def _restore_preprocessing(self, meta: dict, tensors: dict) -> None:
        pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        self.encoder_ = PoseEncoder.from_state(meta["encoder"], pick("fitted.x_"))
        self.input_is_array_ = bool(meta["input_is_array"])
        self.cond_is_array_ = bool(meta["cond_is_array"])
        self.cond_encoder_ = None
        if meta.get("cond_encoder") is not None:
            self.cond_encoder_ = PoseEncoder.from_state(meta["cond_encoder"], pick("fitted.c_"))


def _is_dataset(X) -> bool:
    return type(X).__name__ in ("Dataset", "DataArray") and hasattr(X, "attrs")


def _limited(limits) -> bool:
    """Whether angles with these limits stay inside them without wrapping (less than a turn)."""
    if limits is None:
        return False
    span = np.ptp(np.asarray(limits, dtype=np.float64), axis=-1)
    return bool((span < 2 * np.pi - 1e-9).all())


def aggregate(ds, method: str = "mean"):
    """Collapse the ``hypothesis`` dim of sampled poses into one pose per sample, in each part's
    geometry, without the ground truth (:mod:`anydiff.poses.metrics`): ``"mean"`` (chordal mean
    of rotations, circular mean of wrapping angles, arithmetic mean of positions and of angles
    inside limits of less than a turn, which do not wrap), ``"median"`` (geodesic / circular /
    geometric medians) or ``"medoid"`` (the hypothesis closest to the others). Quaternions go
    through their matrices. Returns a Dataset without the ``hypothesis`` dim; the best-of-H
    choice, which needs the ground truth, is :func:`anydiff.poses.metrics.best_of_hypotheses_oracle`."""
    if method not in AGGREGATIONS:
        raise ValueError(f"method={method!r} must be one of {AGGREGATIONS}")
    if "hypothesis" not in ds.dims:
        raise ValueError("ds has no 'hypothesis' dim: sample with n_hypotheses > 1 first")
    out = {}
    for name, var in ds.data_vars.items():
        kind = var.attrs.get("kind")
        if "hypothesis" not in var.dims:
            out[name] = var
            continue
        v = var.transpose(SAMPLE_DIM, "hypothesis", ...)
        t = torch.from_numpy(np.asarray(v.values, dtype=np.float64))
        if kind == "quaternion":
            agg = matrix_to_quaternion(aggregate_rotations(quaternion_to_matrix(t), method, dim=1))
        elif kind == "rotation_matrix":
            agg = aggregate_rotations(t, method, dim=1)
        elif kind == "angle" and not _limited(var.attrs.get("limits")):
            agg = aggregate_angles(t, method, dim=1)
        else:  # positions, angles that stay inside their limits; vectors along the last axis
            scalar = t.ndim == 2
            agg = aggregate_positions(t[..., None] if scalar else t, method, dim=1)
            agg = agg[..., 0] if scalar else agg
        dims = tuple(d for d in v.dims if d != "hypothesis")
        out[name] = (dims, agg.numpy(), dict(var.attrs))
    import xarray as xr

    coords = {k: c for k, c in ds.coords.items() if "hypothesis" not in c.dims}
    return xr.Dataset(out, coords=coords)
