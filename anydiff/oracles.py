"""Exact Gaussian-mixture models: sampling, log-density and the exact denoiser.

For data ``x0 ~ sum_k w_k N(mu_k, Sigma_k)`` the noisy marginal is the mixture
``x_t ~ sum_k w_k N(alpha_t mu_k, alpha_t^2 Sigma_k + sigma_t^2 I)``, so the posterior mean
``E[x0 | x_t]`` and the score ``grad log p_t(x_t)`` have closed forms. With the eigendecomposition
``Sigma_k = U_k diag(l_k) U_k^T`` every covariance ``C_k(t) = U_k diag(alpha_t^2 l_k + sigma_t^2) U_k^T``
is diagonal in the component's own basis, so any t (one per sample) costs O(B K D^2).

The exact denoiser is a reference for testing samplers and likelihoods without training, and a
teaching aid: it is what a perfectly trained network would output.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import as_generator, check_finite, check_time
from .parameterization import check_prediction, from_x0_eps

__all__ = ["GaussianMixture", "random_mixture"]


class GaussianMixture:
    """A Gaussian mixture over events of shape ``event_shape`` (flattened to D dims inside).

    Parameters
    ----------
    weights : array-like, shape (K,), positive; normalised to sum to 1.
    means : array-like, shape (K, D) or (K, *event_shape).
    covs : array-like, shape (K, D, D) full covariances, or (K,) isotropic standard deviations.
    event_shape : tuple, optional; the shape of one sample (default ``(D,)``).
    """

    def __init__(self, weights, means, covs, event_shape: tuple[int, ...] | None = None):
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        if w.ndim != 1 or w.numel() == 0 or not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
            raise ValueError("weights must be a non-empty 1-D array of positive finite numbers")
        K = w.numel()
        if mu.ndim < 2 or mu.shape[0] != K:
            raise ValueError(f"means must have shape (K={K}, D) or (K, *event_shape), got {tuple(mu.shape)}")
        check_finite(mu, "means")
        self.event_shape = tuple(event_shape) if event_shape is not None else tuple(mu.shape[1:])
        mu = mu.reshape(K, -1)
        D = mu.shape[1]
        if math.prod(self.event_shape) != D:
            raise ValueError(f"event_shape {self.event_shape} does not hold D={D} values")
        c = torch.as_tensor(covs, dtype=torch.float64)
        check_finite(c, "covs")
        if c.shape == (K,):
            if bool((c <= 0).any()):
                raise ValueError("covs given as (K,) are standard deviations and must be positive")
            evals = (c**2)[:, None].expand(K, D).clone()
            evecs = None
            cov = torch.eye(D, dtype=torch.float64) * (c**2)[:, None, None]
        elif c.shape == (K, D, D):
            if not torch.allclose(c, c.transpose(1, 2), atol=1e-10, rtol=1e-8):
                raise ValueError("covs must be symmetric")
            evals, evecs = torch.linalg.eigh(c)
            if bool((evals <= 0).any()):
                raise ValueError("covs must be positive definite")
            cov = c
        else:
            raise ValueError(f"covs must have shape (K, D, D) = ({K}, {D}, {D}) or (K,) = ({K},); "
                             f"got {tuple(c.shape)}")
        self.weights = w / w.sum()
        self.means = mu
        self.covs = cov
        self._evals = evals  # (K, D)
        self._evecs = evecs  # (K, D, D) or None (isotropic: identity)
        self.n_components, self.dim = K, D

    # -- helpers --------------------------------------------------------------------------------
    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim).to(torch.float64)

    def _rotate(self, y: Tensor, device) -> Tensor:
        """y (B, K, D) in data coordinates -> each component's eigenbasis."""
        if self._evecs is None:
            return y
        return torch.einsum("bkd,kde->bke", y, self._evecs.to(device))

    def _unrotate(self, z: Tensor, device) -> Tensor:
        if self._evecs is None:
            return z
        return torch.einsum("bke,kde->bkd", z, self._evecs.to(device))

    def _posterior(self, x: Tensor, alpha: Tensor, sigma: Tensor):
        """Responsibilities and per-component quantities of the noisy mixture at (alpha, sigma)."""
        dev = x.device
        mu, lam = self.means.to(dev), self._evals.to(dev)
        a, s = alpha[:, None, None], sigma[:, None, None]
        z = self._rotate(x[:, None, :] - a * mu[None], dev)           # (B, K, D)
        var = a**2 * lam[None] + s**2                                 # (B, K, D)
        log_n = -0.5 * ((z**2 / var).sum(-1) + torch.log(2 * math.pi * var).sum(-1))
        log_joint = torch.log(self.weights.to(dev))[None] + log_n     # (B, K)
        return z, var, lam, log_joint

    # -- public API -----------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, *, device="cpu",
               dtype=torch.float32, return_labels: bool = False):
        """Draw ``n`` samples, shape ``(n, *event_shape)`` (and component labels when asked)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n={n!r} must be a non-negative integer")
        gen = generator if generator is not None else as_generator(None)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        z = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        z = z * self._evals[labels].sqrt()
        if self._evecs is not None:
            z = torch.einsum("nd,ned->ne", z, self._evecs[labels])
        x = (self.means[labels] + z).to(device=device, dtype=dtype).reshape(n, *self.event_shape)
        return (x, labels.to(device)) if return_labels else x

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density at ``x`` (shape ``(B, *event_shape)``), nats, shape (B,), float64."""
        return self.noisy_log_prob(x, torch.ones(x.shape[0], dtype=torch.float64, device=x.device),
                                   torch.zeros(x.shape[0], dtype=torch.float64, device=x.device))

    def noisy_log_prob(self, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Log-density of the noisy marginal ``p_t`` at ``x_t`` given per-sample ``(alpha_t, sigma_t)``."""
        _, _, _, log_joint = self._posterior(self._flat(x_t), alpha.to(torch.float64), sigma.to(torch.float64))
        return torch.logsumexp(log_joint, dim=1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities of clean data ``x``, shape (B, K)."""
        one = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
        _, _, _, log_joint = self._posterior(self._flat(x), one, torch.zeros_like(one))
        return torch.softmax(log_joint, dim=1)

    def denoise(self, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Exact ``E[x0 | x_t]`` and score ``grad log p_t(x_t)``, both float64 of shape (B, D).

        ``E[x0 | x_t, k] = mu_k + alpha_t Sigma_k C_k^{-1} (x_t - alpha_t mu_k)``,
        ``score = -sum_k r_k C_k^{-1} (x_t - alpha_t mu_k)``, r_k the responsibilities.
        """
        x = self._flat(x_t)
        z, var, lam, log_joint = self._posterior(x, alpha.to(torch.float64), sigma.to(torch.float64))
        r = torch.softmax(log_joint, dim=1)[:, :, None]              # (B, K, 1)
        a = alpha.to(torch.float64)[:, None, None]
        score = -self._unrotate(r * z / var, x.device).sum(1)
        x0 = (r * self.means.to(x.device)[None]).sum(1) + self._unrotate(r * a * lam[None] * z / var, x.device).sum(1)
        return x0, score

    def model(self, schedule, prediction: str = "eps"):
        """The exact denoiser as a model callable ``model(x_t, t, cond=None)``.

        Returns the Bayes-optimal prediction of kind ``prediction`` for the data distribution
        under ``schedule``, computed in float64 and returned in x_t's dtype.
        """
        check_prediction(prediction)

        def exact_model(x_t: Tensor, t: Tensor, cond=None) -> Tensor:
            t = check_time(t)
            if t.ndim == 0:
                t = t.expand(x_t.shape[0])
            alpha, sigma = schedule.alpha_sigma(t.to(x_t.device))
            x0, score = self.denoise(x_t, alpha, sigma)
            eps = -sigma[:, None] * score
            out = from_x0_eps(x0, eps, prediction, alpha[:, None], sigma[:, None])
            return out.reshape(x_t.shape).to(x_t.dtype)

        return exact_model

    def __repr__(self) -> str:
        return f"GaussianMixture(n_components={self.n_components}, event_shape={self.event_shape})"


def random_mixture(dim: int = 16, weights=(0.35, 0.25, 0.20, 0.12, 0.08), *,
                   eigenvalues: tuple[float, float] = (0.01, 0.25), seed: int = 1234) -> GaussianMixture:
    """A mixture of ``len(weights)`` full-covariance Gaussians in ``dim`` dimensions with narrow,
    differently oriented components: means ~ N(0, I); covariances ``Q diag(l) Q^T`` with Q the
    orthogonal factor of a Gaussian matrix and ``l`` log-uniform in ``eigenvalues`` (component
    standard deviations 0.1 to 0.5 by default). The defaults are the 16-D reference problem of
    ``benchmarks/samplers.py`` and the tests. Deterministic from ``seed``."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    lo, hi = (float(v) for v in eigenvalues)
    if not 0 < lo <= hi or not math.isfinite(hi):
        raise ValueError(f"eigenvalues={eigenvalues!r} must be (low, high) with 0 < low <= high")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r} must be a positive integer")
    g = torch.Generator().manual_seed(seed)
    k = w.shape[0]
    means = torch.randn(k, dim, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))
    log_l = math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(k, dim, generator=g, dtype=torch.float64)
    covs = Q @ torch.diag_embed(log_l.exp()) @ Q.transpose(1, 2)
    return GaussianMixture(w, means, 0.5 * (covs + covs.transpose(1, 2)))
