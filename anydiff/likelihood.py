"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, sec. 4.3 and app. D.2).

**Time variable.** The ODE is integrated in the angle ``phi = arctan(sigma / alpha)`` in (0, pi/2),
a function of the log-SNR alone (``lambda = -2 log tan phi``; ``alpha = cos phi``,
``sigma = sin phi``), where it reads

    dx/dphi = v_hat(x, t(phi)) = alpha eps_hat - sigma x0_hat,

the v-prediction of Salimans & Ho (2022) (from ``x = cos(phi) x0 + sin(phi) eps``). Like log-SNR
it depends on the data distribution only, not on the schedule (the kinks of a discrete schedule
do not slow the solver), and it is smoother: in log-SNR the path has two long exponential tails
(the drift decays like ``exp(-|lambda|)`` at both ends) that cost the adaptive solver about a
third of its steps; the angle maps each tail onto a short interval where the drift is regular.

**Log-density.** By the instantaneous change of variables,

    log p_0(x) = log N(x_1; 0, I) + integral from phi_min to phi_max of div_x v_hat dphi,

``div v_hat = (div eps_hat - D sigma) / alpha``. The path ``x(phi)`` is integrated by the adaptive
Dormand-Prince 5(4) pair with a step size per sample (a sample's log-likelihood does not depend
on the rest of its batch; finished samples leave the batch) and a PI step-size controller
(Gustafsson 1991; Hairer & Wanner, sec. IV.2). A step is accepted when its error estimate ``err``
on x is within ``atol + rtol |x|`` and its effect on the log-density is within ``atol`` nats: a
local error moves the path onto a neighbouring one whose log-density differs by about
``score . err``, bounded by ``|score| |err|`` (the score is known from ``v_hat``). The stages of a
step need ``v_hat`` only, without gradients. The log-density increment of each *accepted* step is
the 3-point Gauss-Legendre rule (degree 5, the order of the solver) on the solver's dense output
(the quartic through both ends, both slopes and Shampine's midpoint): three divergences per step,
in one batched model call, instead of one per stage of every step tried (rejected ones included).

**Divergence.** Exact (the trace of the D x D Jacobian, for small D) or Hutchinson's estimate
``E[z^T J z]`` with fixed Rademacher probes (Grathwohl et al. 2019). Both are vector-Jacobian
products ``z^T J`` for a set of vectors ``z`` (the D basis vectors, or the probes): by default
one ``torch.autograd.grad`` call per vector on one graph on CPU, and on a GPU all in one backward
pass, ``torch.func.vmap`` over ``torch.func.vjp`` (same numbers; ``ONE_PASS_DIVERGENCE`` chooses;
on CPU the one pass was no faster for the models measured, see benchmarks/likelihood.py). A model
that ``torch.func`` cannot transform (e.g. an ``autograd.Function`` without ``setup_context``)
falls back to the loop.

**Cost.** On the Gaussian-mixture oracles the defaults (rtol = atol = 1e-3) take ~90-100 model
calls per sample, a third of them with the divergence, against ~130 calls, all with the
divergence, of the former log-SNR solver on ``(x, log p)`` at 1e-5, for a smaller error.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import check_finite
from .parameterization import check_prediction, to_x0_eps
from .process import prior_log_prob
from .schedules import Schedule

__all__ = ["log_likelihood"]

# Dormand & Prince (1980) RK5(4)7M tableau
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = _A[6] + (0.0,)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_ERR = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))
# Shampine (1986): a 5th-order value at the step's midpoint, y(1/2) = y0 + h sum(_MID * k)
_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
        187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)


def _gauss_dense_weights() -> tuple[Tensor, Tensor, Tensor]:
    """3-point Gauss-Legendre nodes ``theta`` and weights on [0, 1], and the weights ``W`` (3, 5)
    of the dense output at those nodes: ``x(theta_j) = W[j] @ (x0, x1, x_mid, h f0, h f1)``, the
    quartic through both ends, the midpoint and both slopes."""
    nodes = torch.tensor([0.5 - math.sqrt(15) / 10, 0.5, 0.5 + math.sqrt(15) / 10], dtype=torch.float64)
    weights = torch.tensor([5 / 18, 8 / 18, 5 / 18], dtype=torch.float64)
    powers = torch.arange(5, dtype=torch.float64)
    conditions = torch.stack([0.0 ** powers, 1.0 ** powers, 0.5 ** powers,        # p(0), p(1), p(1/2)
                              torch.tensor([0.0, 1, 0, 0, 0], dtype=torch.float64),  # p'(0)
                              powers])                                              # p'(1)
    W = torch.linalg.solve(conditions, nodes[:, None] ** powers, left=False)
    return nodes, weights, W


_GAUSS_NODES, _GAUSS_WEIGHTS, _DENSE = _gauss_dense_weights()
LOG_SNR_FLOOR = -20.0  # where the prior N(0, I) is taken when log-SNR at t=1 is lower (zero terminal SNR)
FIRST_STEP = 1 / 32    # the first step, as a fraction of the angle interval (about 0.05)
# The divergence's vector-Jacobian products through torch.func (vmap over vjp: one backward pass
# for all D vectors) instead of one torch.autograd.grad call per vector on one graph; both give
# the same numbers. None: on for data on a GPU (2x faster for the 16-D mixture on an H200, equal
# for D = 2), off on CPU (no faster there: the same FLOPs, and ~2 s of imports on first use).
ONE_PASS_DIVERGENCE: bool | None = None


def _dormand_prince(velocity, divergence, score, x0: Tensor, s0: float, s1: float, rtol: float, atol: float,
                    max_steps: int) -> tuple[Tensor, Tensor]:
    """Integrate ``dx/ds = velocity(s, x, rows)`` from s0 to s1 (either direction) for x of shape
    (B, D), and ``delta = integral of divergence(s, x(s), rows) ds`` along the path; returns
    ``(x(s1), delta)``.

    Every sample has its own position s and step size h, so a sample's result does not depend on
    which other samples share its batch. Each call sees the unfinished rows only: ``rows`` (a long
    tensor) says which rows of the batch ``s`` and ``x`` hold (a row may appear several times).
    A step is accepted when its error estimate ``err`` on x is within ``atol + rtol |x|`` (RMS over
    the D coordinates) and its effect on the log-density, ``|score(s, x, v)| |err|`` nats, is
    within ``atol``.
    """
    B, span = x0.shape[0], s1 - s0
    direction = 1.0 if span > 0 else -1.0
    dev, dt = x0.device, x0.dtype
    s = torch.full((B,), s0, dtype=dt, device=dev)
    h = torch.full_like(s, abs(span) * FIRST_STEP)
    err_prev = torch.ones_like(s)
    delta = torch.zeros_like(s)
    x, k1 = x0.clone(), velocity(s, x0, torch.arange(B, device=dev))
    nodes, gauss_w, dense = _GAUSS_NODES.to(dev, dt), _GAUSS_WEIGHTS.to(dev, dt), _DENSE.to(dev, dt)
    for _ in range(max_steps):
        remaining = (s1 - s) * direction
        rows = (remaining > 1e-12 * abs(span)).nonzero().squeeze(1)
        if rows.numel() == 0:
            return x, delta
        s_r, x_r, k_r = s[rows], x[rows], k1[rows]
        h_r = direction * torch.minimum(h[rows].abs(), remaining[rows])
        ks = [k_r]
        for i in range(1, 7):
            x_i = x_r + h_r[:, None] * sum(a * k for a, k in zip(_A[i], ks) if a)
            ks.append(velocity(s_r + _C[i] * h_r, x_i, rows))
        x_new = x_r + h_r[:, None] * sum(b * k for b, k in zip(_B5, ks) if b)
        err = h_r[:, None] * sum(e * k for e, k in zip(_ERR, ks) if e)
        scale = atol + rtol * torch.maximum(x_r.abs(), x_new.abs())
        err_norm = ((err / scale) ** 2).mean(dim=1).sqrt()
        # the error's effect on the log-density, in nats: moving x by err moves the path onto a
        # neighbour whose log p differs by about score . err (bounded by |score| |err|)
        err_ll = score(s_r + h_r, x_new, ks[6]).norm(dim=1) * err.norm(dim=1)
        err_norm = torch.maximum(err_norm, err_ll / atol)
        accept = err_norm <= 1.0
        # the log-density increment of the accepted steps: Gauss-Legendre on the dense output
        a = accept.nonzero().squeeze(1)
        if a.numel():
            ha = h_r[a]
            x_mid = x_r[a] + ha[:, None] * sum(c * k[a] for c, k in zip(_MID, ks) if c)
            basis = torch.stack([x_r[a], x_new[a], x_mid, ha[:, None] * k_r[a], ha[:, None] * ks[6][a]])
            x_nodes = torch.einsum("jp,pnd->jnd", dense, basis).reshape(-1, x0.shape[1])
            s_nodes = (s_r[a][None] + nodes[:, None] * ha[None]).reshape(-1)
            g = divergence(s_nodes, x_nodes, rows[a].repeat(len(nodes))).reshape(len(nodes), -1)
            delta[rows[a]] += ha * (gauss_w[:, None] * g).sum(0)
        s[rows] = torch.where(accept, s_r + h_r, s_r)
        x[rows] = torch.where(accept[:, None], x_new, x_r)
        k1[rows] = torch.where(accept[:, None], ks[6], k_r)
        # PI step-size control: h_new = h 0.9 err^(-0.7/5) err_prev^(0.4/5) after an accepted step
        # (damps the growth when the error rises), the classic h 0.9 err^(-1/5) after a rejection
        e = err_norm.clamp(min=1e-10)
        p = err_prev[rows]
        factor = torch.where(accept, 0.9 * e ** -0.14 * p ** 0.08, 0.9 * e ** -0.2).clamp(0.2, 5.0)
        err_prev[rows] = torch.where(accept, e.clamp(min=1e-4), p)
        h[rows] = h_r * factor
    raise RuntimeError(f"log_likelihood: the ODE solver did not finish in {max_steps} steps; "
                       "raise max_steps or loosen rtol/atol")


def _vjp_rows(fn, x: Tensor, vectors: Tensor, one_pass: bool) -> tuple[Tensor, Tensor]:
    """``fn(x)`` and the vector-Jacobian products ``vectors[k] @ J`` for every row of ``x``
    (``fn`` maps rows independently, so ``J`` is block diagonal). ``vectors``: (K, n, D).

    ``one_pass``: ``torch.func.vmap`` over ``torch.func.vjp``, one backward pass for all K;
    otherwise K ``torch.autograd.grad`` calls.
    """
    if one_pass:
        out, pullback = torch.func.vjp(fn, x)
        (vjps,) = torch.func.vmap(pullback)(vectors)
        return out, vjps
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        out = fn(x_in)
        vjps = torch.stack([torch.autograd.grad(out, x_in, v, retain_graph=k + 1 < vectors.shape[0])[0]
                            for k, v in enumerate(vectors)])
    return out.detach(), vjps


def log_likelihood(model, x: Tensor, *, schedule: Schedule, prediction: str = "eps",
                   divergence: str = "exact", n_probes: int = 1, generator: torch.Generator | None = None,
                   cond=None, t_min: float = 1e-5, rtol: float = 1e-3, atol: float = 1e-3,
                   max_steps: int = 2000) -> Tensor:
    """Log-likelihood of data under a diffusion model, in nats per sample.

    Parameters
    ----------
    model : callable ``model(x_t, t, cond=None)`` predicting ``prediction``.
    x : Tensor, shape (B, *event_shape), the data.
    schedule : Schedule.
    divergence : "exact" (the Jacobian's trace from D vector-Jacobian products; exact for any D,
        cheap for small D) or "hutchinson".
    n_probes : Rademacher probes for "hutchinson", fixed along the path.
    generator : source of the probes.
    cond : condition passed to the model; a tensor with one row per sample (first dimension B)
        follows its rows as the solver drops finished samples from the batch.
    t_min : the ODE starts at t_min > 0 (the score is singular at t = 0 for a learned model); the
        result is the density of x under the model's marginal at t_min, a negligible difference
        when sigma_{t_min} is small against the data's scale.
    rtol, atol : tolerances of each solver step: on the path x, ``atol + rtol |x|``; on its effect
        on the log-density, ``atol`` nats. The defaults (1e-3; 1e-5 before) keep the error on the
        Gaussian-mixture oracles within 0.01 nats per sample (mean absolute error ~2e-4 nats); a
        freshly trained network, rougher in t, is less accurate at the same tolerances (pass 1e-4
        for about the accuracy the old defaults gave).
    max_steps : the most solver steps (tried, per sample) before a RuntimeError.

    Returns
    -------
    Tensor, shape (B,), float64: ``log p(x)`` in nats.
    """
    check_prediction(prediction)
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence={divergence!r} is unknown; use 'exact' or 'hutchinson'")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes={n_probes!r} must be a positive integer")
    if not torch.is_tensor(x) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (B, *event_shape)")
    check_finite(x, "x")
    if not (0.0 < t_min < 1.0):
        raise ValueError(f"t_min={t_min} must lie in (0, 1)")
    B, event_shape, dtype = x.shape[0], x.shape[1:], x.dtype
    D = x[0].numel()
    dev = x.device
    t_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    lam_max = float(schedule.log_snr(torch.tensor([t_min], dtype=torch.float64))[0])
    lam_min = max(float(schedule.log_snrs[-1]), LOG_SNR_FLOOR)
    phi_min, phi_max = math.atan(math.exp(-lam_max / 2)), math.atan(math.exp(-lam_min / 2))
    if divergence == "exact":
        vectors = torch.eye(D, dtype=dtype, device=dev)[:, None, :]  # (D, 1, D), expanded per call
    else:
        gen_dev = generator.device if generator is not None else dev
        vectors = (torch.randint(0, 2, (n_probes, B, D), generator=generator, device=gen_dev)
                   .to(dev, dtype) * 2 - 1)
    # switched off for good when torch.func cannot transform the model
    one_pass = [dev.type != "cpu" if ONE_PASS_DIVERGENCE is None else ONE_PASS_DIVERGENCE]

    def v_hat(phi: Tensor, rows: Tensor):
        """``dx/dphi = v_hat`` at angles ``phi`` for the samples ``rows``, as a function of their
        flat ``x`` (shape (len(rows), D), the data's dtype)."""
        n = rows.shape[0]
        t = schedule.t_of_log_snr(-2 * torch.log(torch.tan(phi))).to(t_dtype)
        alpha, sigma = torch.cos(phi)[:, None].to(dtype), torch.sin(phi)[:, None].to(dtype)
        cond_rows = cond[rows] if torch.is_tensor(cond) and cond.ndim > 0 and cond.shape[0] == B else cond

        def fn(x_flat: Tensor) -> Tensor:
            out = model(x_flat.reshape(n, *event_shape), t, cond_rows)
            if not torch.is_tensor(out) or out.shape != (n, *event_shape):
                raise ValueError(f"model output must be shaped like x {tuple(x.shape)}")
            x0, eps = to_x0_eps(out.reshape(n, D), prediction, x_flat, alpha, sigma)
            return alpha * eps - sigma * x0

        return fn

    def velocity(phi: Tensor, x_flat: Tensor, rows: Tensor) -> Tensor:
        fn = v_hat(phi, rows)
        with torch.no_grad():
            return fn(x_flat.to(dtype)).to(torch.float64)

    def div_v(phi: Tensor, x_flat: Tensor, rows: Tensor) -> Tensor:
        fn = v_hat(phi, rows)
        vec = vectors.expand(D, rows.shape[0], D) if divergence == "exact" else vectors[:, rows]
        x_in = x_flat.detach().to(dtype)
        if one_pass[0]:
            try:
                _, vjps = _vjp_rows(fn, x_in, vec, True)
            except (RuntimeError, NotImplementedError):
                # torch.func could not transform the model (e.g. data-dependent control flow or
                # an in-place update of its input): the loop below for this and later calls; an
                # error of the model itself is raised there again
                one_pass[0] = False
        if not one_pass[0]:
            _, vjps = _vjp_rows(fn, x_in, vec, False)
        tr = (vjps * vec).sum((0, 2)).to(torch.float64)
        return tr / n_probes if divergence == "hutchinson" else tr

    def score(phi: Tensor, x_flat: Tensor, v: Tensor) -> Tensor:
        """The model's score ``-eps_hat / sigma`` from its velocity: ``eps_hat = alpha v + sigma x``."""
        alpha, sigma = torch.cos(phi)[:, None], torch.sin(phi)[:, None]
        return -(alpha * v + sigma * x_flat) / sigma

    x_flat = x.reshape(B, D).to(torch.float64)
    x1, delta = _dormand_prince(velocity, div_v, score, x_flat, phi_min, phi_max, rtol, atol, max_steps)
    return prior_log_prob(x1) + delta
