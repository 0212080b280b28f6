"""The training engine: one :class:`Trainer` for every denoiser and data shape.

What makes it fast is that nothing per step touches the host. The data set lives on the device
and batches are drawn there by index (no DataLoader); the noise, times and label-dropout masks
are drawn there too; the loss is read back only every ``log_every`` steps. On CUDA the whole step
(forward, backward, gradient clipping, fused AdamW, EMA) is captured once as a CUDA graph and
replayed, with bf16 autocast. On CPU the same step runs eagerly.

Runs are reproducible: all randomness comes from the trainer's generator (and the global RNG,
seeded from it, for dropout), and a checkpoint holds every state, so ``resume=True`` continues
exactly where an uninterrupted run would be. Under ``torchrun`` the trainer runs data-parallel
(DDP; NCCL on GPU, gloo on CPU): every rank draws the same global batch and trains on its own
slice of it, so N ranks follow the same trajectory as one process with the whole batch.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from typing import Any

import torch
from torch import Tensor, nn

from ._utils import resolve_device
from .losses import TIME_SAMPLINGS, WEIGHTINGS, denoising_loss, sample_time, stable_target
from .parameterization import check_prediction
from .schedules import Schedule

__all__ = ["Trainer", "TrainingDivergedError", "distributed_context"]

logger = logging.getLogger("anydiff.training")
CHECKPOINT_VERSION = 1


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the message says at which step."""


def distributed_context() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (Intel Xeon since Sapphire Rapids):
    there a 512 x 256 by 256 x 256 product took 0.07 ms in bf16 against 0.44 ms in float32 on one
    core; on CPUs without AMX bf16 is no faster than float32, often slower."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x: guarded
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means "no"
        return False


def _as_tensor(value, name: str) -> Tensor:
    if torch.is_tensor(value):
        return value.detach()
    try:
        import numpy as np

        return torch.from_numpy(np.asarray(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array or tensor, got {type(value).__name__}") from exc


class Trainer:
    """Train a denoiser ``model(x_t, t, cond=None, *, cond_keep=None)`` on a data set.

    Parameters
    ----------
    model : nn.Module predicting ``prediction`` (e.g. :class:`anydiff.nn.ResidualMLP`).
    schedule : Schedule.
    prediction : {"eps", "x0", "v"}; weighting : {"uniform", "snr", "min_snr"}; min_snr_gamma : float.
    time_sampling : "uniform" (continuous t) or "discrete" (t = k/T).
    batch_size : global batch (split evenly over DDP ranks).
    max_steps : optimizer steps of the whole run (a resumed run stops there too).
    learning_rate, weight_decay, betas : AdamW (Loshchilov & Hutter 2019), fused on CUDA and CPU.
    warmup_steps : linear warm-up, then cosine decay to 0 at ``max_steps``.
    grad_clip : max global gradient norm (None: no clipping).
    ema_decay : EMA of the weights used for sampling, with the warm-up ``min(decay, (1+n)/(10+n))``.
    label_dropout : probability of training a row unconditionally (classifier-free guidance).
    reference_batch : 0 trains on the plain targets; R > 0 on the stable target field over R
        random rows of the data per step (:func:`anydiff.losses.stable_target`), a lower-variance
        target for the high-noise denoiser at ``O(B R D)`` extra work a step. Needs data without
        ``mask`` and with class labels or no ``cond``.
    mixed_precision : "auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "no".
    cuda_graph : "auto" (on CUDA without DDP), True or False.
    compile : bool, default False. Compile the loss (the network's forward and backward and the
        loss around it) and the update (clipping, AdamW, EMA) with ``torch.compile``, which fuses
        elementwise work into far fewer kernels; it combines with the CUDA graph. The first steps
        pay a one-off compilation (tens of seconds, a C++ / Triton toolchain needed), so it pays
        in long runs only.
    device : "auto", "cpu", "cuda", ... (under torchrun, CUDA rank r uses cuda:LOCAL_RANK).
    seed : int; the run is a function of it (and of the model's initial weights).
    checkpoint_path, checkpoint_every, resume : a checkpoint written atomically every N steps
        (and at the end); with ``resume=True`` an existing checkpoint is continued.
    verbose : tqdm progress bar with the loss; log_every : steps between loss read-backs.
    """

    def __init__(self, model: nn.Module, schedule: Schedule, *, prediction: str = "eps",
                 weighting: str = "uniform", min_snr_gamma: float = 5.0, time_sampling: str = "uniform",
                 batch_size: int = 1024, max_steps: int = 1000, learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 warmup_steps: int = 100, grad_clip: float | None = 1.0, ema_decay: float = 0.999,
                 label_dropout: float = 0.1, reference_batch: int = 0, mixed_precision: str = "auto",
                 cuda_graph="auto", compile: bool = False, device="auto", seed: int = 0,
                 checkpoint_path: str | None = None, checkpoint_every: int | None = None, resume: bool = False, verbose: bool = True,
                 log_every: int = 100):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be an anydiff.Schedule, got {type(schedule).__name__}")
        check_prediction(prediction)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r} is unknown; use one of {WEIGHTINGS}")
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling={time_sampling!r} is unknown; use one of {TIME_SAMPLINGS}")
        for name, value in (("batch_size", batch_size), ("max_steps", max_steps), ("log_every", log_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if isinstance(reference_batch, bool) or not isinstance(reference_batch, int) or reference_batch < 0:
            raise ValueError(f"reference_batch={reference_batch!r} must be a non-negative integer (0: plain targets)")
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive integer or None")
        if checkpoint_every is not None and checkpoint_path is None:
            raise ValueError("checkpoint_every needs checkpoint_path (where to write)")
        if not (0.0 <= label_dropout < 1.0):
            raise ValueError(f"label_dropout={label_dropout} must lie in [0, 1)")
        if not (0.0 <= ema_decay < 1.0):
            raise ValueError(f"ema_decay={ema_decay} must lie in [0, 1)")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate={learning_rate} must be positive")
        if mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision={mixed_precision!r}: use 'auto', 'bf16' or 'no'")
        self.rank, self.world_size, local_rank = distributed_context()
        dev = resolve_device(device)
        if dev.type == "cuda" and self.world_size > 1:
            dev = torch.device("cuda", local_rank)
        if batch_size % self.world_size:
            raise ValueError(f"batch_size={batch_size} must divide evenly over {self.world_size} ranks")
        if cuda_graph == "auto":
            cuda_graph = dev.type == "cuda" and self.world_size == 1
        elif cuda_graph and dev.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device; use cuda_graph='auto' or False")
        self.model, self.schedule, self.device = model.to(dev), schedule, dev
        self.prediction, self.weighting, self.min_snr_gamma = prediction, weighting, min_snr_gamma
        self.time_sampling, self.batch_size, self.max_steps = time_sampling, batch_size, max_steps
        self.learning_rate, self.warmup_steps, self.grad_clip = learning_rate, warmup_steps, grad_clip
        self.ema_decay, self.label_dropout, self.seed = ema_decay, label_dropout, seed
        self.reference_batch = reference_batch
        self.autocast = dev.type == "cuda" if mixed_precision == "auto" else mixed_precision == "bf16"
        self.cuda_graph = bool(cuda_graph)
        if not isinstance(compile, bool):
            raise ValueError(f"compile={compile!r} must be True or False")
        self.checkpoint_path, self.checkpoint_every, self.resume = checkpoint_path, checkpoint_every, resume
        self.verbose, self.log_every = verbose and self.rank == 0, log_every
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        # the tensors the update touches, listed once (walking the modules each step cost ~1 ms
        # of a ~25 ms CPU step); load_state_dict copies into these same tensors
        self._params = [p for p in self.model.parameters()]
        self._ema_params = [p for p in self.ema_model.parameters()]
        self._buffers = list(zip(self.ema_model.buffers(), self.model.buffers()))
        self.net = self.model
        if self.world_size > 1:
            self.net = self._wrap_ddp(local_rank)
        self._loss = torch.compile(self._plain_loss) if compile else self._plain_loss
        self._update = torch.compile(self._plain_update) if compile else self._plain_update
        # compiled, the optimizer is traced (its own fused kernel from the foreach code) and its
        # learning rate a tensor (a float would recompile at every new value)
        fused = dev.type in ("cuda", "cpu") and not compile  # the CPU's fused AdamW: 4x faster than its loop
        tensor_lr = self.cuda_graph or compile
        lr = torch.tensor(learning_rate, device=dev) if tensor_lr else learning_rate
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay,
                                           fused=fused or None, foreach=True if compile else None,
                                           capturable=tensor_lr)
        self.generator = torch.Generator(device=dev).manual_seed(seed)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._step_t = torch.zeros((), dtype=torch.long, device=dev)   # counts steps on the device
        self._bad_step = torch.full((), -1, dtype=torch.long, device=dev)  # first non-finite loss
        self._loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        self._graph = None
        self._capturing = False  # True while warming up for and capturing the CUDA graph

    # -- set-up --------------------------------------------------------------------------------
    def _wrap_ddp(self, local_rank: int) -> nn.Module:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        ids = [local_rank] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _load_data(self, X, cond, mask) -> None:
        X = _as_tensor(X, "X")
        if X.ndim < 2 or X.shape[0] == 0 or X[0].numel() == 0:
            raise ValueError(f"X must be a non-empty array of shape (n_samples, *event_shape), got {tuple(X.shape)}")
        if not (X.is_floating_point() or X.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"X must hold numbers, got dtype {X.dtype}")
        X = X.to(torch.float32)
        n = X.shape[0]
        if mask is not None:
            mask = _as_tensor(mask, "mask").to(torch.float32)
            if mask.shape != X.shape:
                raise ValueError(f"mask must have the shape of X {tuple(X.shape)}, got {tuple(mask.shape)}")
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError("mask must hold 0 (missing) and 1 (observed) only")
            X = torch.where(mask > 0, X, torch.zeros_like(X))
        if not bool(torch.isfinite(X).all()):
            raise ValueError("X contains NaN or infinite values; impute them or pass mask= (0 where missing)")
        if self.batch_size > n:
            raise ValueError(f"batch_size={self.batch_size} is larger than the data ({n} rows); "
                             f"lower batch_size to at most {n}")
        if cond is not None:
            cond = _as_tensor(cond, "cond")
            if cond.shape[0] != n:
                raise ValueError(f"cond must have one row per sample of X ({n}), got shape {tuple(cond.shape)}")
            if cond.is_floating_point():
                if cond.ndim != 2 or not bool(torch.isfinite(cond).all()):
                    raise ValueError("a continuous cond must be a finite (n_samples, cond_dim) array")
                cond = cond.to(torch.float32)
            elif cond.ndim != 1:
                raise ValueError(f"class labels in cond must have shape (n_samples,), got {tuple(cond.shape)}")
            else:
                cond = cond.long()
            cond = cond.to(self.device)
        if self.reference_batch and (mask is not None or (cond is not None and cond.is_floating_point())):
            raise ValueError("reference_batch > 0 needs complete data (no mask) and class labels or no cond; "
                             "pass reference_batch=0 to train on the plain targets")
        mask = mask.to(self.device) if mask is not None else None
        if self._graph is not None:
            # a captured graph reads the tensors it was captured with: refill them in place
            same = (X.shape == self.X.shape and (cond is None) == (self.cond is None)
                    and (mask is None) == (self.mask is None)
                    and (cond is None or (cond.shape == self.cond.shape and cond.dtype == self.cond.dtype)))
            if same:
                for old, new in ((self.X, X), (self.cond, cond), (self.mask, mask)):
                    if old is not None:
                        old.copy_(new)
                return
            self._graph = None  # different data: capture again
        self.X, self.cond, self.mask = X.to(self.device), cond, mask

    # -- one step ------------------------------------------------------------------------------
    def _draw(self):
        """The global batch (indices, times, noise, keep mask, reference rows), drawn on the device;
        this rank's slice of all but the reference rows."""
        B, n = self.batch_size, self.X.shape[0]
        g = self.generator if self._graph is None and not self._capturing else None
        idx = torch.randint(0, n, (B,), generator=g, device=self.device)
        t = sample_time(B, schedule=self.schedule, time_sampling=self.time_sampling, generator=g,
                        device=self.device)
        noise = torch.randn((B, *self.X.shape[1:]), generator=g, device=self.device)
        keep = torch.rand(B, generator=g, device=self.device) >= self.label_dropout
        ref = (torch.randint(0, n, (self.reference_batch,), generator=g, device=self.device)
               if self.reference_batch else None)
        lo, hi = self.rank * (B // self.world_size), (self.rank + 1) * (B // self.world_size)
        return idx[lo:hi], t[lo:hi], noise[lo:hi], keep[lo:hi], ref

    def _plain_loss(self, x0, t, noise, cond, keep, mask) -> Tensor:
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            return denoising_loss(self.net, x0, schedule=self.schedule, prediction=self.prediction,
                                  weighting=self.weighting, min_snr_gamma=self.min_snr_gamma, mask=mask, t=t,
                                  noise=noise, cond=cond, cond_keep=keep, check=False)

    def _train_step(self) -> Tensor:
        idx, t, noise, keep, ref = self._draw()
        x0 = self.X[idx]
        cond = self.cond[idx] if self.cond is not None else None
        mask = self.mask[idx] if self.mask is not None else None
        if ref is not None:  # in full precision, outside autocast: it compares distances
            allowed = None if cond is None else (cond[:, None] == self.cond[ref][None]) | ~keep[:, None]
            x0, noise = stable_target(x0, noise, t, self.X[ref], schedule=self.schedule, allowed=allowed)
        loss = self._loss(x0, t, noise, cond, keep if cond is not None else None, mask)
        self.optimizer.zero_grad(set_to_none=self._graph is None and not self._capturing)
        loss.backward()
        self._update(loss.detach())
        return loss

    def _plain_update(self, loss: Tensor) -> None:
        """Clip, the optimizer step, the EMA with warm-up and the loss bookkeeping, all on the
        device (so that they can live inside a CUDA graph, and be compiled into few kernels)."""
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip, foreach=True)
        self.optimizer.step()
        self._step_t += 1
        n = self._step_t.to(torch.float32)
        decay = torch.clamp((1 + n) / (10 + n), max=self.ema_decay)
        torch._foreach_lerp_(self._ema_params, [p.detach() for p in self._params], 1 - decay)
        for b_ema, b in self._buffers:
            b_ema.copy_(b)
        finite = torch.isfinite(loss)
        self._bad_step.copy_(torch.where(finite | (self._bad_step >= 0), self._bad_step, self._step_t))
        self._loss_sum += loss.float()

    def _capture(self, warmup: int) -> int:
        """Warm up on a side stream (``warmup`` real steps, which initialise the optimizer's
        state), then capture one whole training step as a CUDA graph. Returns the steps taken."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        self._capturing = True
        torch.cuda.manual_seed(self.seed + self.step)
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                self._set_lr(self.step)
                self._train_step()
                self.step += 1
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._train_step()
        self._graph, self._capturing = graph, False
        return warmup

    def _lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.max_steps - self.warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - self.warmup_steps, span) / span))

    def _set_lr(self, step: int) -> None:
        lr = self.learning_rate * self._lr_factor(step)
        for group in self.optimizer.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "step": self.step, "model": self.model.state_dict(),
                "ema": self.ema_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "cpu_rng": torch.get_rng_state(),
                "step_t": self._step_t.cpu(), "history": self.history}

    def save_checkpoint(self, path: str | None = None) -> None:
        """Write the full training state atomically (temporary file, then rename); rank 0 only."""
        path = path or self.checkpoint_path
        if self.rank != 0 or path is None:
            return
        self._raise_if_diverged()
        tmp = f"{path}.tmp-{os.getpid()}"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str) -> None:
        """Restore a state written by :meth:`save_checkpoint` (tensors only: nothing is executed)."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a truncated or foreign file
            raise ValueError(f"{path} is not a readable anydiff checkpoint: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path} is not an anydiff checkpoint of version {CHECKPOINT_VERSION}")
        self.model.load_state_dict(state["model"])
        self.ema_model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["cpu_rng"].cpu())
        self._step_t.copy_(state["step_t"])
        self.step, self.history = int(state["step"]), list(state["history"])

    # -- the loop ------------------------------------------------------------------------------
    def _raise_if_diverged(self) -> None:
        bad = int(self._bad_step)
        if bad >= 0:
            where = (f"; the last good checkpoint is {self.checkpoint_path}"
                     if self.checkpoint_path and os.path.exists(self.checkpoint_path) else "")
            raise TrainingDivergedError(
                f"the training loss became NaN or infinite at step {bad}{where}. Lower learning_rate "
                f"(now {self.learning_rate}), keep grad_clip on, or check the data's scale")

    def _read_loss(self, steps: int) -> float:
        self._raise_if_diverged()
        loss = float(self._loss_sum) / max(steps, 1)
        self._loss_sum.zero_()
        return loss

    def fit(self, X, *, cond=None, mask=None, steps: int | None = None) -> "Trainer":
        """Train on ``X`` (shape ``(n_samples, *event_shape)``), with optional per-row ``cond``
        (class labels ``(n,)`` or vectors ``(n, cond_dim)``) and ``mask`` (1 observed, 0 missing).

        ``steps`` stops after that many more steps (at most ``max_steps`` in all); a later ``fit``
        or a resumed trainer carries on with the same learning-rate schedule.
        """
        self._load_data(X, cond, mask)
        if self.resume and self.checkpoint_path and os.path.exists(self.checkpoint_path):
            self.load_checkpoint(self.checkpoint_path)
            logger.info("resumed from %s at step %d", self.checkpoint_path, self.step)
        elif self.step == 0:
            torch.manual_seed(self.seed)  # dropout and other global-RNG users
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_steps, initial=self.step, desc="training", leave=False)
        self.model.train()
        start, since = time.perf_counter(), 0
        stop = self.max_steps if steps is None else min(self.max_steps, self.step + steps)
        while self.step < stop:
            if self.cuda_graph and self._graph is None:
                since += self._capture(warmup=min(3, stop - self.step))
                if self.step < stop:
                    continue
            else:
                self._set_lr(self.step)
                if self._graph is not None:
                    self._graph.replay()
                else:
                    self._train_step()
                self.step += 1
                since += 1
            last = self.step >= stop
            if self.step % self.log_every == 0 or last:
                loss = self._read_loss(since)
                self.history.append({"step": self.step, "loss": loss, "lr": self.learning_rate * self._lr_factor(self.step - 1)})
                logger.info("step %d  loss %.5f", self.step, loss)
                if bar is not None:
                    bar.update(since)
                    bar.set_postfix(loss=f"{loss:.4f}")
                since = 0
            if self.checkpoint_every and (self.step % self.checkpoint_every == 0 or last):
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        self._raise_if_diverged()
        self.model.eval()
        self.train_time_ = time.perf_counter() - start
        return self
