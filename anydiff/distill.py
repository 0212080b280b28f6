"""Progressive distillation (Salimans & Ho 2022): few-step students of a trained denoiser.

A student learns to take in one deterministic DDIM step what its teacher takes in two. Starting
from the trained model sampled with DDIM on ``teacher_steps`` uniform steps in t, each round
halves the steps: the student, initialised with the teacher's weights, is trained on
``t = i / N`` (the student's own grid of N steps) to predict the clean estimate ``x0~`` for which a
single DDIM step from ``x_t`` to ``t - 1/N`` lands where two teacher steps (through
``t - 1/(2N)``) land:

    x~ = (x_{t''} - (sigma_{t''} / sigma_t) x_t) / (alpha_{t''} - (sigma_{t''} / sigma_t) alpha_t)

with the loss ``max(SNR_t, 1) ||x0_hat - x~||^2`` (their "truncated SNR" weighting; at ``t = 1``
alone the x0 of a v-model stays defined). The student of one round is the teacher of the next.
Every round trains through :class:`anydiff.training.Trainer` (EMA, warm-up, DDP), so a student is
a network of the teacher's architecture, sampled with ``sampler="ddim"``, ``timesteps="trailing"``
and its own number of steps.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from ._utils import append_dims, check_int
from .parameterization import to_x0_eps
from .schedules import Schedule
from .training import Trainer

__all__ = ["progressive_distillation", "DistillationTrainer"]


class DistillationTrainer(Trainer):
    """The :class:`Trainer` with the progressive-distillation loss: the student (``model``) learns
    two DDIM steps of ``teacher`` on the grid of ``n_steps`` uniform steps in t as one."""

    def __init__(self, model: nn.Module, schedule: Schedule, *, teacher: nn.Module, n_steps: int, **kwargs):
        super().__init__(model, schedule, **kwargs)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.n_steps = check_int(n_steps, "n_steps")

    def _coefs(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.schedule.alpha_sigma(t)
        return append_dims(alpha, x.ndim).to(x.dtype), append_dims(sigma, x.ndim).to(x.dtype)

    def _ddim(self, x: Tensor, t: Tensor, t_next: Tensor, cond, keep) -> Tensor:
        """One deterministic DDIM step of the teacher from t to t_next."""
        out = self.teacher(x, t.to(x.dtype), cond, cond_keep=keep)
        a, s = self._coefs(t, x)
        x0, eps = to_x0_eps(out, self.prediction, x, a, s)
        a_next, s_next = self._coefs(t_next, x)
        return a_next * x0 + s_next * eps

    def _plain_loss(self, x0, t, noise, cond, keep, mask) -> Tensor:
        N = self.n_steps
        t = (torch.ceil(t.double() * N).clamp(1, N) / N)  # the student's grid: 1/N, ..., 1
        a, s = self._coefs(t, x0)
        x_t = a * x0 + s * noise
        with torch.no_grad():  # two teacher steps, and the x0 that one step would need
            t_mid, t_next = t - 0.5 / N, (t - 1.0 / N).clamp_min(0.0)
            x_next = self._ddim(self._ddim(x_t, t, t_mid, cond, keep), t_mid, t_next, cond, keep)
            a_next, s_next = self._coefs(t_next, x0)
            ratio = s_next / s
            target = (x_next - ratio * x_t) / (a_next - ratio * a)
        out = self.net(x_t, t.to(x_t.dtype), cond, cond_keep=keep)
        x0_hat, _ = to_x0_eps(out, self.prediction, x_t, a, s)
        weight = torch.clamp(a**2 / s**2, min=1.0)
        err = (x0_hat - target) ** 2
        if mask is not None:
            err = err * mask
        return (weight * err).mean()


def progressive_distillation(model: nn.Module, X: Tensor, *, schedule: Schedule, prediction: str,
                             steps: int = 8, teacher_steps: int = 128, steps_per_round: int = 1000,
                             cond=None, label_dropout: float = 0.0, **trainer_kwargs) -> dict[int, nn.Module]:
    """Distil ``model`` into students of ``teacher_steps / 2, ..., steps`` DDIM steps.

    Parameters
    ----------
    model : the trained denoiser (the EMA weights), ``model(x_t, t, cond=None, *, cond_keep=None)``.
    X : Tensor ``(n, *event_shape)``, the (encoded) training data.
    schedule, prediction : those the model was trained with.
    steps : the last student's steps; ``teacher_steps`` must be ``steps`` times a power of two.
    teacher_steps : the DDIM steps of the first teacher (the trained model).
    steps_per_round : optimizer steps of each halving.
    cond, label_dropout : per-row conditions and their dropout, as in training.
    **trainer_kwargs : passed to every round's :class:`DistillationTrainer` (batch_size,
        learning_rate, ema_decay, device, seed, verbose, ...).

    Returns
    -------
    dict ``{n_steps: student}``, one EMA student per round, in eval mode.
    """
    steps, teacher_steps = check_int(steps, "steps"), check_int(teacher_steps, "teacher_steps", minimum=2)
    rounds = math.log2(teacher_steps / steps) if teacher_steps > steps else 0
    if rounds < 1 or rounds != int(rounds):
        raise ValueError(f"teacher_steps={teacher_steps} must be steps={steps} times a power of two (2, 4, 8, ...)")
    check_int(steps_per_round, "steps_per_round")
    students: dict[int, nn.Module] = {}
    teacher, n = model, teacher_steps
    seed = int(trainer_kwargs.pop("seed", 0))
    for r in range(int(rounds)):
        n //= 2
        student = copy.deepcopy(teacher).train().requires_grad_(True)
        trainer = DistillationTrainer(student, schedule, teacher=teacher, n_steps=n, prediction=prediction,
                                      max_steps=steps_per_round, label_dropout=label_dropout, seed=seed + r,
                                      **trainer_kwargs)
        trainer.fit(X, cond=cond)
        teacher = trainer.ema_model.eval()
        students[n] = teacher
    return students
