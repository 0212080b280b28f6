"""PointCloudDiffusion: a diffusion model of 3-D point clouds behind ``fit`` / ``sample`` / ``complete``.

The adapter normalizes each cloud (or the whole set) to a standard position and scale, brings the
clouds to one training size by random subsampling and trains one of two architectures:

* ``"transformer"``: a set transformer (:class:`anydiff.nn.Transformer` without positional
  information: one token per point, time and class through adaptive LayerNorm) with the
  estimator base's training run. Shape completion is inpainting (RePaint) with the observed
  points as known tokens.
* ``"latent"``: latent diffusion (:class:`anydiff.latent.LatentDiffusion`; DPM, Luo & Hu 2021;
  LION, Zeng et al. 2022): a PointNet encoder maps a cloud to a shape latent, a pointwise
  residual-MLP denoiser generates points independently given the latent, and a second diffusion
  model over the latents (class-conditional with ``y``) generates new shapes. Shape completion
  encodes the partial scan and samples the missing points given its latent.

Both are permutation-equivariant over points, so a model trained on P points samples any
number of points.
"""
from __future__ import annotations

import contextlib
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._utils import as_generator
from ..estimators import _SCHEDULES, DiffusionEstimator, _seed_from
from ..latent import LatentDiffusion
from ..nn import Transformer
from ..nn._checks import check_positive_int
from .metrics import cloud_stats

__all__ = ["PointCloudDiffusion"]

MAX_TRAIN_POINTS = 512  # train_points=None: the smallest cloud's size, at most this (a CPU budget)
_MODES = ("box", "sphere", "global")
ARCHITECTURES = ("transformer", "latent")


# -- validation ---------------------------------------------------------------------------------
def _as_cloud(c, name: str) -> np.ndarray:
    """One cloud ``(n_i, 3)`` as float64, checked."""
    if torch.is_tensor(c):
        c = c.detach().cpu().numpy()
    try:
        c = np.asarray(c)
    except Exception as err:  # ragged nested lists and other non-arrays
        raise ValueError(f"{name} must be an array of shape (n_points, 3): {err}") from err
    if not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise ValueError(f"{name} must hold real numbers, got dtype {c.dtype}")
    if c.ndim != 2 or c.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (n_points, 3) (xyz coordinates on the last axis), "
                         f"got shape {tuple(c.shape)}")
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates; remove or repair those points")
    return c


def _as_clouds(X, name: str, *, min_points: int) -> tuple[list[np.ndarray], bool]:
    """``X`` — an array ``(n, P, 3)``, one cloud ``(P, 3)`` or a list of ``(n_i, 3)`` — as a list of
    float64 clouds, and whether a single ``(P, 3)`` array was given."""
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError(f"{name} is an empty list; give at least one cloud of shape (n_points, 3)")
        clouds, single = [_as_cloud(c, f"{name}[{i}]") for i, c in enumerate(X)], False
    else:
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        try:
            X = np.asarray(X)
        except Exception as err:
            raise ValueError(f"{name} must be an array (n_clouds, n_points, 3) or a list of (n_i, 3) "
                             f"arrays: {err}") from err
        if X.ndim not in (2, 3) or X.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (n_clouds, n_points, 3) or be a list of (n_i, 3) arrays "
                             f"(xyz coordinates on the last axis), got shape {tuple(X.shape)}")
        single = X.ndim == 2
        X = X[None] if single else X
        if X.shape[0] == 0:
            raise ValueError(f"{name} holds no clouds; give at least one")
        clouds = [_as_cloud(c, name if single else f"{name}[{i}]") for i, c in enumerate(X)]
    for i, c in enumerate(clouds):
        if len(c) < min_points:
            where = name if single else f"{name}[{i}]"
            raise ValueError(f"{where} has {len(c)} point(s); at least {min_points} are needed")
    return clouds, single


class PointCloudDiffusion(DiffusionEstimator):
    """A diffusion model of 3-D point clouds (shapes), optionally class-conditional.

    With ``architecture="transformer"`` each point is a token of a DiT-style set transformer
    (:class:`anydiff.nn.Transformer` with no positional encoding; Peebles & Xie 2023, Lee et al.
    2019): the denoiser is permutation-equivariant over points, so it is trained on
    ``train_points`` points per cloud and samples any number of points. With
    ``architecture="latent"`` the model is a latent diffusion model
    (:class:`anydiff.latent.LatentDiffusion`): an encoder, a pointwise decoder and a prior over
    shape latents (see ``architecture``).

    Parameters
    ----------
    architecture : {"transformer", "latent"}, default="transformer"
        The denoiser.

        * ``"transformer"`` -- the set transformer above; attention over the points of a cloud.
        * ``"latent"`` -- DPM (Luo & Hu 2021) / LION (Zeng et al. 2022) style latent diffusion: a
          PointNet encoder (a shared per-point MLP of width ``hidden``, max and mean pooling, a
          variational head) maps a cloud to a shape latent of ``latent_dim`` numbers; a residual
          MLP (``hidden`` x ``depth``) denoises every point independently given the latent;
          both are trained jointly (``max_steps`` steps) on the points' denoising loss plus
          ``kl_weight`` times the posterior's KL divergence from N(0, I). Then a second residual
          MLP of the same size, the prior, is trained (``max_steps`` steps again, cheap: one
          vector per cloud) on the standardized posterior means of the training clouds,
          class-conditional with ``y`` (label dropout, guidance as for the transformer).
          Sampling draws latents from the prior, then points from the decoder. The cost is
          linear in the points (no attention). With the defaults (hidden 128, depth 4,
          latent_dim 128) it has 0.75 M parameters: encoder 0.08 M, decoder 0.33 M, prior
          0.33 M (the transformer: 1.25 M).
    latent_dim : int, default=128
        ``architecture="latent"`` only: the width of the shape latent.
    kl_weight : float, default=1e-3
        ``architecture="latent"`` only: the weight of the KL term per cloud against the mean
        squared denoising error per coordinate; it keeps the latent space smooth for the prior
        (0: a plain autoencoder, still with posterior noise in training).
    normalize : {"box", "sphere", "global"}, default="box"
        How clouds are put into the model's coordinates (the definitions of
        :func:`anydiff.points.metrics.normalize_clouds`):

        * ``"box"`` -- per cloud: bounding-box centre at the origin, largest half-extent 1, so every
          shape fits [-1, 1]^3 (LION's per-shape normalization, Zeng et al. 2022);
        * ``"sphere"`` -- per cloud: mean point at the origin, largest norm 1 (the unit ball);
        * ``"global"`` -- one centre (the mean of all points) and one scale (the standard deviation
          of all centred coordinates) for the whole set: shapes keep their relative positions
          and sizes, which the model must then learn.

        "box" is the default: the network sees every shape at one scale and spends its capacity
        on the shape alone, and the bounds [-1, 1] are exact, so the clean-data estimate can be
        clipped to them. With a per-shape mode a generated cloud is put back into the units of X
        with the centre and scale of a training cloud drawn at random (of the same class when
        ``y`` is given), so sizes follow the training distribution but not the shape drawn; use
        "global" when size or position depends on the shape and matters.
    train_points : int or None, default=None
        Points per cloud in training. Every cloud larger than this is subsampled once, without
        replacement, with indices drawn from ``random_state``. None takes the smallest cloud's
        size, at most 512. It must not exceed the smallest cloud. Attention costs
        ``train_points**2`` per layer: with the default network a step of 32 clouds took about
        3 s at 512 points and 20 s at 2048 on one (shared) CPU core, so 2048 is meant for a GPU
        (the model samples any number of points whatever it was trained on).
    max_steps : int, default=2000
        Training steps (AdamW with linear warm-up and cosine decay).
    batch_size : int, default=32
        Clouds per step, capped at the number of clouds.
    learning_rate : float, default=1e-3
    hidden, depth, heads, dropout : int, int, int, float, default=128, 4, 4, 0.0
        The transformer's token width, blocks, attention heads (must divide ``hidden``) and
        dropout; for ``architecture="latent"`` the width of the encoder and the width, blocks and
        dropout of the decoder and the prior (``heads`` unused).
    prediction : {"v", "eps", "x0"}, default="v"
        v-prediction (Salimans & Ho 2022), as :class:`anydiff.VectorDiffusion`: an eps network's
        error near t = 1 is amplified by sigma/alpha in the clean-data estimate.
    schedule, n_timesteps, timesteps, ema_decay, device, verbose
        As for :class:`anydiff.VectorDiffusion`.
    sampler : str, default="dpmpp_2m_sde"
    sampling_steps : int, default=50
        SDE-DPM-Solver++(2M) steps per sample, the base's sampler (50 steps: the setting of
        :class:`anydiff.TabularDiffusion`); for ``architecture="latent"`` the steps of the prior
        and of the decoder each. ``complete`` uses the ancestral sampler with RePaint
        (transformer) or the sampler (latent).
    clip : bool, default=True
        In ``sample``, clamp the denoiser's clean-data estimate to the per-axis range of the
        normalized training points ([-1, 1] with "box"). ``complete`` never clips (the partial
        scan's placement is an estimate, see there).
    label_dropout : float, default=0.1
        With ``y``: the fraction of training clouds seen unconditionally (classifier-free guidance).
    reference_batch : int, default=0
        The stable target field of :class:`anydiff.VectorDiffusion`, over whole clouds. Off by
        default: clouds are unordered sets, so a point of one cloud has no counterpart in another,
        and the posterior over clouds of 3 x train_points dimensions is nearly one-hot anyway.
    random_state : int, numpy RandomState or Generator, or None
        Makes ``fit`` reproducible (the subsampling and the training run, on the same device and
        thread count).

    Attributes
    ----------
    train_points_ : int, the points per cloud used in training.
    stats_ : ndarray (n_clouds, 4) float64, or (1, 4) for "global"
        Centre (x, y, z) and scale of each training cloud; ``sample`` maps back through them.
    stat_labels_ : ndarray (n_clouds,) int64 or None, the class code of each row of ``stats_``.
    z_min_, z_max_ : ndarray (3,), the range of the normalized training points per axis.
    classes_ : ndarray or None, the labels seen in ``fit``.
    model_, schedule_, loss_curve_, n_iter_ : as for :class:`anydiff.VectorDiffusion`; with
        ``architecture="latent"`` ``model_`` is the :class:`anydiff.latent.LatentDiffusion` and
        ``loss_curve_`` the first stage's (encoder and decoder).
    prior_loss_curve_ : list of float, ``architecture="latent"`` only: the prior's loss curve.

    Notes
    -----
    The saved model (:meth:`save`, :func:`anydiff.load`) holds the network (for "latent": the
    encoder, decoder, prior and the latents' standardization), ``stats_``, ``stat_labels_`` and
    the normalized range: no training points and no training latents.

    Examples
    --------
    >>> import anydiff as ad
    >>> X, y = ad.points.make_shapes(64, n_points=256, classes=["sphere", "box"],
    ...                              random_state=0, return_labels=True)
    >>> pc = ad.PointCloudDiffusion(max_steps=500, random_state=0).fit(X, y)  # doctest: +SKIP
    >>> pc.sample(4, n_points=1024, y="box").shape                           # doctest: +SKIP
    (4, 1024, 3)
    """

    _parameter_constraints = {
        **DiffusionEstimator._parameter_constraints,
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "kl_weight": [Interval(Real, 0, None, closed="left")],
        "normalize": [StrOptions(set(_MODES))],
        "train_points": [Interval(Integral, 2, None, closed="left"), None],
        "heads": [Interval(Integral, 1, None, closed="left")],
        "clip": ["boolean"],
        "label_dropout": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(self, *, architecture: str = "transformer", latent_dim: int = 128, kl_weight: float = 1e-3,
                 normalize: str = "box", train_points: int | None = None, max_steps: int = 2000,
                 batch_size: int = 32, learning_rate: float = 1e-3, hidden: int = 128, depth: int = 4,
                 heads: int = 4, dropout: float = 0.0, prediction: str = "v", schedule: str = "cosine",
                 n_timesteps: int = 1000, sampler: str = "dpmpp_2m_sde", sampling_steps: int = 50,
                 clip: bool = True, timesteps: str = "logsnr", ema_decay: float = 0.999,
                 label_dropout: float = 0.1, reference_batch: int = 0, device: str = "auto",
                 random_state=None, verbose: bool = False):
        self.architecture = architecture
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        self.normalize = normalize
        self.train_points = train_points
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden = hidden
        self.depth = depth
        self.heads = heads
        self.dropout = dropout
        self.prediction = prediction
        self.schedule = schedule
        self.n_timesteps = n_timesteps
        self.sampler = sampler
        self.sampling_steps = sampling_steps
        self.clip = clip
        self.timesteps = timesteps
        self.ema_decay = ema_decay
        self.label_dropout = label_dropout
        self.reference_batch = reference_batch
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- the adapter ---------------------------------------------------------------------------
    def _network(self) -> Transformer | LatentDiffusion:
        num_classes = None if self.classes_ is None else len(self.classes_)
        if self.architecture == "latent":
            return LatentDiffusion(3, int(self.latent_dim), hidden=self.hidden, depth=self.depth,
                                   dropout=self.dropout, num_classes=num_classes, kl_weight=float(self.kl_weight))
        return Transformer(3, width=self.hidden, depth=self.depth, heads=self.heads, dropout=self.dropout,
                           num_classes=None if self.classes_ is None else len(self.classes_))

    def _event_shape(self) -> tuple[int, ...]:
        # the points per sample are a per-call quantity (see _call); training uses train_points_
        return (getattr(self, "_call_points", None) or self.train_points_, 3)

    def _clip_bounds(self):
        if not self.clip or getattr(self, "_call_no_clip", False):
            return None
        return (self.z_min_, self.z_max_)

    @contextlib.contextmanager
    def _call(self, n_points: int, *, clip: bool = True):
        """Generate clouds of ``n_points`` points within the block (``_event_shape`` reads it)."""
        self._call_points, self._call_no_clip = n_points, not clip
        try:
            yield
        finally:
            del self._call_points, self._call_no_clip

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Normalize the clouds and train the denoiser on them.

        Parameters
        ----------
        X : array (n_clouds, n_points, 3), or a list of (n_i, 3) arrays of different sizes
            Finite coordinates, at least 2 points per cloud.
        y : array (n_clouds,) of class labels, optional
            Makes the model class-conditional, trained with ``label_dropout`` for classifier-free
            guidance.

        Returns
        -------
        self
        """
        if self.architecture == "transformer" and self.hidden % self.heads:
            raise ValueError(f"heads={self.heads} must divide hidden={self.hidden}; use a hidden width that "
                             "is a multiple of heads")
        clouds, single = _as_clouds(X, "X", min_points=2)
        if single:
            raise ValueError(f"X has shape {np.shape(X)}: one cloud; fit needs a set of clouds "
                             "(n_clouds, n_points, 3) or a list of (n_i, 3) arrays (X[None] for one cloud)")
        if y is not None:
            y = np.asarray(y)
            if y.ndim != 1 or len(y) != len(clouds):
                raise ValueError(f"y must hold one label per cloud ({len(clouds)}), got shape {y.shape}")
        codes = self._set_labels(y)
        smallest = min(len(c) for c in clouds)
        if self.train_points is None:
            P = min(smallest, MAX_TRAIN_POINTS)
        elif self.train_points > smallest:
            raise ValueError(f"train_points={self.train_points} exceeds the smallest cloud ({smallest} points); "
                             f"lower it to at most {smallest} or remove the small clouds")
        else:
            P = int(self.train_points)
        self.stats_ = cloud_stats(clouds, self.normalize, name="X")
        self.stat_labels_ = None if codes is None or self.normalize == "global" else codes.astype(np.int64)
        rows = np.zeros(len(clouds), dtype=int) if self.normalize == "global" else np.arange(len(clouds))
        rng = np.random.default_rng(_seed_from(self.random_state))
        Z = np.empty((len(clouds), P, 3))
        for i, c in enumerate(clouds):
            if len(c) > P:
                c = c[rng.choice(len(c), P, replace=False)]
            Z[i] = (c - self.stats_[rows[i], :3]) / self.stats_[rows[i], 3]
        self.train_points_ = P
        self.n_features_in_ = 3
        self.z_min_, self.z_max_ = Z.min(axis=(0, 1)), Z.max(axis=(0, 1))
        self._train(Z, codes, label_dropout=self.label_dropout)
        return self

    def _train(self, Z: np.ndarray, codes: np.ndarray | None = None, *, label_dropout: float = 0.0) -> None:
        """The base's training run for the transformer; the two stages of
        :meth:`anydiff.latent.LatentDiffusion.fit` for the latent architecture."""
        if self.architecture != "latent":
            super()._train(Z, codes, label_dropout=label_dropout)
            return
        seed = _seed_from(self.random_state)
        steps = self._max_steps(len(Z))
        self.schedule_ = _SCHEDULES[self.schedule](self.n_timesteps)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._network()
        with torch.random.fork_rng(devices=[]), self._threads():
            net.fit(Z, codes, schedule=self.schedule_, prediction=self.prediction, steps=steps,
                    batch_size=self._batch(len(Z)), learning_rate=self.learning_rate, ema_decay=self.ema_decay,
                    label_dropout=label_dropout, reference_batch=int(self.reference_batch), device=self.device,
                    seed=seed, verbose=self.verbose)
        self.model_ = net
        self.loss_curve_ = [h["loss"] for h in net.history_["autoencoder"]]
        self.prior_loss_curve_ = [h["loss"] for h in net.history_["prior"]]
        self.n_iter_ = steps

    def _latent_kwargs(self, gen) -> dict:
        return dict(schedule=self.schedule_, prediction=self.prediction, generator=gen, sampler=self.sampler,
                    steps=self.sampling_steps, timesteps=self.timesteps)

    # -- generation ----------------------------------------------------------------------------
    def _draw_stats(self, codes, n: int, gen: torch.Generator) -> np.ndarray:
        """Centre and scale ``(n, 4)`` for ``n`` generated clouds: a training cloud's, drawn
        uniformly (among the clouds of its class when ``codes`` are given)."""
        if len(self.stats_) == 1:
            return np.repeat(self.stats_, n, axis=0)
        rows = np.empty(n, dtype=np.int64)
        codes = None if codes is None or self.stat_labels_ is None else codes.cpu().numpy()
        groups = [(np.arange(n), np.arange(len(self.stats_)))] if codes is None else \
            [(np.flatnonzero(codes == c), np.flatnonzero(self.stat_labels_ == c)) for c in np.unique(codes)]
        for out, pool in groups:
            pick = torch.randint(len(pool), (len(out),), generator=gen, device=gen.device).cpu().numpy()
            rows[out] = pool[pick]
        return self.stats_[rows]

    def sample(self, n_clouds: int = 1, *, n_points: int = 2048, y=None, guidance_scale: float | None = None,
               random_state=None, chunk_size: int = 16) -> np.ndarray:
        """Draw new clouds in the units of X.

        Parameters
        ----------
        n_clouds : int, the number of clouds.
        n_points : int, points per cloud: any number (the network is a set model), not only the
            training size.
        y : one label or one per cloud, optional; class-conditional sampling (fit with ``y``).
        guidance_scale : float, optional; classifier-free guidance with ``y`` (1 = plain
            conditional, > 1 sharper classes).
        random_state : int, numpy or torch generator, or None; the noise, and the training cloud
            whose centre and scale each sample takes (per-shape ``normalize``).
        chunk_size : int, clouds generated at once (the transformer's attention memory grows with
            ``chunk_size * n_points**2`` where no fused kernel is available; the latent
            architecture's memory with ``chunk_size * n_points``).

        Returns
        -------
        ndarray, shape (n_clouds, n_points, 3), float64.
        """
        check_is_fitted(self)
        n_clouds = check_positive_int(n_clouds, "n_clouds")
        n_points = check_positive_int(n_points, "n_points")
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        gen = as_generator(random_state, self._device())
        if self.architecture == "latent":
            if guidance_scale is not None and y is None:
                raise ValueError("guidance_scale needs y: guidance sharpens the class given in y")
            with self._threads():
                Z = self.model_.sample(n_clouds, n_points, labels=self._encode_labels(y, n_clouds),
                                       guidance_scale=guidance_scale, clip_x0=self._clip_bounds(),
                                       chunk_size=chunk_size, **self._latent_kwargs(gen))
        else:
            with self._call(n_points):
                Z = self._generate(n_clouds, y=y, guidance_scale=guidance_scale, random_state=gen,
                                   chunk_size=chunk_size)
        stats = self._draw_stats(self._encode_labels(y, n_clouds), n_clouds, gen)
        return Z.detach().cpu().double().numpy() * stats[:, None, 3:] + stats[:, None, :3]

    def complete(self, partial, *, n_points: int = 2048, resample: int = 10, steps: int | None = None,
                 random_state=None) -> np.ndarray:
        """Complete partial scans: sample the rest of the shape given the observed points.

        With ``architecture="latent"``: the scan (placed as below) is encoded to its posterior
        mean latent, and the missing ``n_points - m`` points are sampled from the decoder given
        that latent (the sampler, ``steps`` steps, default ``sampling_steps``; ``resample`` is
        unused). Given the latent the decoder's points are independent, so keeping the observed
        points adds nothing else to condition on; what the completion knows of the scan is its
        latent. The encoder was trained on whole clouds, so the latent of a one-sided scan
        describes the shape the scan looks like, and the completion follows it.

        With ``architecture="transformer"``, RePaint inpainting (Lugmayr et al. 2022; the base's
        ``_inpaint``: the ancestral sampler, ``steps`` steps, default ``sampling_steps`` and at
        least 50, of ``resample`` repeats):
        the ``m`` observed points are ``m`` known tokens, the other ``n_points - m`` tokens are free.

        Placement in the model's coordinates: with ``normalize="global"`` the training centre
        and scale. With a per-shape mode, the partial scan's own centre (bounding-box centre for
        "box", mean for "sphere") and the **median training scale**: a partial scan's own extent
        understates the shape's (normalizing it by that would blow the observed part up to a
        whole shape's size), while shapes' sizes vary less than that error. The centre of a
        one-sided scan is biased towards the observed side, and the completion follows it (on
        the upper half of a sphere of radius 5, with a small "box" model, the generated points'
        centre sat about 2 units above the sphere's), so the clean-data estimate is not clipped
        here. With ``normalize="global"`` a scan in the training frame is placed exactly.

        Parameters
        ----------
        partial : array (m, 3), an array (k, m, 3) or a list of (m_i, 3) arrays
            Observed points in the units of X (at least 1 per scan).
        n_points : int, points of each completed cloud, more than every scan's m.
        resample, steps : RePaint repeats per step (transformer only) and sampler steps.
        random_state : int, numpy or torch generator, or None.

        Returns
        -------
        ndarray (n_points, 3) for one (m, 3) scan, else (k, n_points, 3), float64, in the units of
        ``partial``: the first m points are the observed points, exactly; the rest are generated.
        """
        check_is_fitted(self)
        n_points = check_positive_int(n_points, "n_points")
        scans, single = _as_clouds(partial, "partial", min_points=1)
        largest = max(len(s) for s in scans)
        if largest >= n_points:
            raise ValueError(f"n_points={n_points} leaves nothing to complete: a partial scan has {largest} "
                             f"points; ask for more points (n_points > {largest})")
        if self.normalize == "global":
            place = np.repeat(self.stats_, len(scans), axis=0)
        else:
            scale = float(np.median(self.stats_[:, 3]))
            centres = [(s.min(0) + s.max(0)) / 2 if self.normalize == "box" else s.mean(0) for s in scans]
            place = np.array([np.r_[c, scale] for c in centres])
        known = np.zeros((len(scans), n_points, 3))
        mask = np.zeros((len(scans), n_points, 3), dtype=bool)
        for i, s in enumerate(scans):
            known[i, :len(s)] = (s - place[i, :3]) / place[i, 3]
            mask[i, :len(s)] = True
        if self.architecture == "latent":
            Z = self._complete_latent(known, [len(s) for s in scans], steps, random_state)
        else:
            with self._call(n_points, clip=False):
                Z = self._inpaint(known, mask, resample=resample, steps=steps, random_state=random_state)
        out = Z.detach().cpu().double().numpy() * place[:, None, 3:] + place[:, None, :3]
        for i, s in enumerate(scans):
            out[i, :len(s)] = s  # the observed points exactly
        return out[0] if single else out

    def _complete_latent(self, known: np.ndarray, sizes: list[int], steps: int | None, random_state) -> torch.Tensor:
        """Latent completion: each scan's posterior mean latent, then ``n_points`` decoder
        points per latent, of which the first ``n_points - m_i`` follow the ``m_i`` observed ones
        (the decoder's points are i.i.d. given the latent, so any subset is a sample)."""
        dev, n_points = self._device(), known.shape[1]
        gen = as_generator(random_state, dev)
        kw = {**self._latent_kwargs(gen), "steps": steps or self.sampling_steps}
        with self._threads():
            z = torch.cat([self.model_.encode(torch.from_numpy(known[i:i + 1, :m]).float().to(dev))
                           for i, m in enumerate(sizes)])
            free = self.model_.decode(z, n_points, clip_x0=None, **kw)
        Z = torch.from_numpy(known).to(free)
        for i, m in enumerate(sizes):
            Z[i, m:] = free[i, :n_points - m]
        return Z

    # -- persistence ---------------------------------------------------------------------------
    def _preprocessing_state(self) -> tuple[dict, dict]:
        meta = {"train_points": int(self.train_points_)}
        if self.architecture == "latent":
            meta["prior_loss_curve"] = [float(v) for v in self.prior_loss_curve_]
        tensors = {"fitted.stats": torch.from_numpy(self.stats_), "fitted.z_min": torch.from_numpy(self.z_min_),
                   "fitted.z_max": torch.from_numpy(self.z_max_)}
        if self.stat_labels_ is not None:
            tensors["fitted.stat_labels"] = torch.from_numpy(self.stat_labels_)
        return meta, tensors

    def _restore_preprocessing(self, meta: dict, tensors: dict) -> None:
        self.train_points_ = int(meta["train_points"])
        self.n_features_in_ = 3
        if self.architecture == "latent":
            self.prior_loss_curve_ = [float(v) for v in meta["prior_loss_curve"]]
        self.stats_ = tensors["fitted.stats"].double().numpy()
        self.z_min_ = tensors["fitted.z_min"].double().numpy()
        self.z_max_ = tensors["fitted.z_max"].double().numpy()
        labels = tensors.get("fitted.stat_labels")
        self.stat_labels_ = None if labels is None else labels.long().numpy()
