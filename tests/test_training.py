"""The training engine on CPU: determinism, exact resume, safe checkpoints, DDP equivalence,
divergence handling and bad input. CUDA-graph and bf16 paths are marked ``gpu``."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

import anydiff as ad
from anydiff.metrics import sliced_wasserstein
from anydiff.nn import ResidualMLP
from anydiff.training import Trainer, TrainingDivergedError

SCHED = ad.schedules.cosine(1000)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * torch.tensor([1.5, 0.5]) + torch.tensor([1.0, -1.0])


def make(init_seed=0, **kw):
    torch.manual_seed(init_seed)
    model = ResidualMLP(2, hidden=32, depth=2)
    args = dict(batch_size=64, max_steps=20, learning_rate=5e-3, warmup_steps=5, device="cpu",
                verbose=False, log_every=5)
    args.update(kw)
    return Trainer(model, SCHED, **args)


def params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_ema_is_the_warm_up_average_of_the_weights():
    """The EMA after each step is ``d ema + (1 - d) weights`` with ``d = min(decay, (1+n)/(10+n))``,
    recomputed here from the weights the optimizer produced (one run per number of steps)."""
    for steps in (1, 2, 3):
        trainer = make(max_steps=steps, ema_decay=0.5)
        expected = params(trainer.model).clone()
        history = []
        trainer.optimizer.register_step_post_hook(lambda *_: history.append(params(trainer.model).clone()))
        trainer.fit(data())
        for n, weights in enumerate(history, start=1):
            decay = min(0.5, (1 + n) / (10 + n))
            expected = decay * expected + (1 - decay) * weights
        assert len(history) == steps
        torch.testing.assert_close(params(trainer.ema_model), expected, rtol=1e-6, atol=1e-7)


def test_deterministic_with_a_seed():
    a, b = make().fit(data()), make().fit(data())
    assert torch.equal(params(a.model), params(b.model))
    assert torch.equal(params(a.ema_model), params(b.ema_model))
    c = make(seed=1).fit(data())
    assert not torch.equal(params(a.model), params(c.model))


def test_resume_equals_an_uninterrupted_run(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    full = make(max_steps=20).fit(data())
    first = make(max_steps=20, checkpoint_path=path, checkpoint_every=10)
    first.fit(data(), steps=10)  # interrupted after 10 of 20 steps
    assert os.path.exists(path) and not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    resumed = make(max_steps=20, checkpoint_path=path, checkpoint_every=10, resume=True)
    resumed.fit(data())
    assert resumed.step == 20
    torch.testing.assert_close(params(resumed.model), params(full.model), rtol=0, atol=0)
    torch.testing.assert_close(params(resumed.ema_model), params(full.ema_model), rtol=0, atol=0)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    Boom.marker = str(marker)
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"version": 1, "model": Boom()}, fh)
    trainer = make()
    with pytest.raises(ValueError, match="checkpoint"):
        trainer.load_checkpoint(str(bad))
    assert not marker.exists()
    truncated = tmp_path / "short.pt"
    truncated.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="checkpoint"):
        trainer.load_checkpoint(str(truncated))


def test_learns_a_distribution():
    """A small MLP trained for a few hundred steps samples close to the data (sliced W2 well
    below that of the untrained model and of a moment-matched Gaussian)."""
    X = ad.oracles.GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [0.3, 0.3]).sample(
        4096, torch.Generator().manual_seed(0))
    # v-prediction: an eps network's small error at t ~ 1 is multiplied by sigma/alpha (2e4 for
    # cosine) when converted to x0, which a few-step sampler cannot recover from
    trainer = make(max_steps=600, batch_size=256, learning_rate=3e-3, warmup_steps=50, log_every=100,
                   prediction="v")
    trainer.fit(X)
    first_loss, last_loss = trainer.history[0]["loss"], trainer.history[-1]["loss"]
    assert last_loss < first_loss
    x = ad.sample(trainer.ema_model, (2000, 2), schedule=SCHED, steps=20, timesteps="logsnr", prediction="v",
                  generator=torch.Generator().manual_seed(0))
    gauss = X.mean(0) + torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)) @ torch.linalg.cholesky(torch.cov(X.T)).T
    sw = sliced_wasserstein(x, X, generator=torch.Generator().manual_seed(0))
    sw_gauss = sliced_wasserstein(gauss, X, generator=torch.Generator().manual_seed(0))
    assert sw < 0.5 * sw_gauss, (sw, sw_gauss)


def test_stable_targets_learn_the_high_noise_denoiser_better():
    """Eight Gaussians: at t in [0.45, 0.95], where the mass is divided between the modes, the
    network trained on the stable target field (256 reference rows) is much closer to the exact
    mixture denoiser than one trained on the plain targets with the same batches and steps."""
    ang = torch.arange(8) * torch.pi / 4
    means = 2 * torch.stack([ang.cos(), ang.sin()], 1)
    gm = ad.oracles.GaussianMixture(torch.ones(8), means, torch.full((8,), 0.2))
    X = gm.sample(2048, torch.Generator().manual_seed(0)).float()
    g = torch.Generator().manual_seed(5)
    t = 0.45 + 0.5 * torch.rand(4000, generator=g, dtype=torch.float64)
    x_t = SCHED.q_sample(gm.sample(4000, g), t, torch.randn(4000, 2, generator=g, dtype=torch.float64))
    alpha, sigma = SCHED.alpha_sigma(t)
    exact, _ = gm.denoise(x_t, alpha, sigma)
    err = {}
    for reference_batch in (0, 256):
        trainer = make(max_steps=600, batch_size=256, learning_rate=3e-3, warmup_steps=50, prediction="v",
                       reference_batch=reference_batch)
        trainer.fit(X)
        with torch.no_grad():
            v = trainer.ema_model(x_t.float(), t.float()).double()
        x0_hat = alpha[:, None] * x_t - sigma[:, None] * v
        err[reference_batch] = float((x0_hat - exact).square().sum(1).mean())
    assert err[256] < 0.75 * err[0], err


def test_stable_targets_with_class_labels_use_rows_of_the_same_class():
    """Two classes far apart, every label kept: a reference row of the other class never takes
    weight, so the trained conditional denoiser at high noise points at its own class's mean."""
    X = torch.cat([torch.randn(256, 2) * 0.1 - 3.0, torch.randn(256, 2) * 0.1 + 3.0])
    y = torch.cat([torch.zeros(256, dtype=torch.long), torch.ones(256, dtype=torch.long)])
    torch.manual_seed(0)
    model = ResidualMLP(2, hidden=32, depth=2, num_classes=2)
    trainer = Trainer(model, SCHED, prediction="v", batch_size=128, max_steps=300, learning_rate=5e-3,
                      warmup_steps=20, label_dropout=0.0, reference_batch=64, device="cpu", verbose=False)
    trainer.fit(X, cond=y)
    t = torch.full((2,), 0.95)
    x_t = torch.zeros(2, 2)  # equally far from both classes
    with torch.no_grad():
        v = trainer.ema_model(x_t, t, torch.tensor([0, 1]))
    alpha, sigma = (c.float() for c in SCHED.alpha_sigma(t.double()))
    x0_hat = alpha[:, None] * x_t - sigma[:, None] * v
    assert float(x0_hat[0].sum()) < -4.0 and float(x0_hat[1].sum()) > 4.0, x0_hat


class NaNAfter(torch.nn.Module):
    """Wraps a model and returns NaN from its n-th call on: a run that diverges mid-way."""

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x, t, cond=None, **kw):
        self.calls += 1
        out = self.inner(x, t, cond, **kw)
        return out * float("nan") if self.calls >= self.n else out


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    torch.manual_seed(0)
    model = NaNAfter(ResidualMLP(2, hidden=16, depth=1), n=7)
    trainer = Trainer(model, SCHED, batch_size=32, max_steps=20, device="cpu", verbose=False, log_every=5,
                      checkpoint_path=path, checkpoint_every=5)
    with pytest.raises(TrainingDivergedError, match="step 7"):
        trainer.fit(data())
    state = torch.load(path, weights_only=True)
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_masked_entries_are_ignored():
    """NaN where mask == 0 trains; the values hidden by the mask do not matter."""
    X = data()
    mask = torch.ones_like(X)
    mask[::3, 1] = 0
    X_nan, X_junk = X.clone(), X.clone()
    X_nan[mask == 0] = float("nan")
    X_junk[mask == 0] = 1e6
    a = make().fit(X_nan, mask=mask)
    b = make().fit(X_junk, mask=mask)
    assert torch.equal(params(a.model), params(b.model))


def test_label_dropout_rate():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ResidualMLP(2, hidden=16, depth=1, num_classes=3)

        def forward(self, x, t, cond=None, *, cond_keep=None):
            seen.append(cond_keep.float().mean().item())
            return self.net(x, t, cond, cond_keep=cond_keep)

    labels = torch.arange(512) % 3
    Trainer(Spy(), SCHED, batch_size=256, max_steps=40, label_dropout=0.25, device="cpu",
            verbose=False).fit(data(), cond=labels)
    assert abs(sum(seen) / len(seen) - 0.75) < 0.03


def test_lr_schedule_warms_up_then_decays_to_zero():
    trainer = make(max_steps=100, warmup_steps=10, learning_rate=1.0)
    lrs = [trainer._lr_factor(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-3


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"),
    (dict(max_steps=-1), "max_steps"),
    (dict(prediction="noise"), "prediction"),
    (dict(label_dropout=1.5), "label_dropout"),
    (dict(cuda_graph=True), "cuda_graph"),
    (dict(mixed_precision="fp8"), "mixed_precision"),
    (dict(checkpoint_every=5), "checkpoint_path"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(reference_batch=-1), "reference_batch"),
    (dict(reference_batch=True), "reference_batch"),
    (dict(reference_batch=2.0), "reference_batch"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


@pytest.mark.parametrize("X,kw,match", [
    (torch.full((64, 2), float("nan")), {}, "NaN"),
    (torch.zeros(0, 2), {}, "non-empty"),
    (torch.zeros(10, 2), {}, "batch_size"),
    (torch.zeros(128, 2), dict(cond=torch.zeros(5, dtype=torch.long)), "cond"),
    (torch.zeros(128, 2), dict(mask=torch.full((128, 2), 0.5)), "mask"),
    (torch.zeros(128, 2), dict(mask=torch.ones(128, 3)), "mask"),
])
def test_bad_data(X, kw, match):
    with pytest.raises(ValueError, match=match):
        make().fit(X, **kw)


@pytest.mark.parametrize("kw", [dict(mask=torch.ones(128, 2)), dict(cond=torch.zeros(128, 3))])
def test_stable_targets_need_complete_rows_and_class_labels(kw):
    with pytest.raises(ValueError, match="reference_batch"):
        make(reference_batch=16).fit(torch.zeros(128, 2), **kw)


@pytest.mark.parametrize("reference_batch", [0, 32])
def test_ddp_two_cpu_processes_match_one(tmp_path, reference_batch):
    """torchrun with 2 gloo ranks: the weights are identical across ranks and equal a single
    process trained on the same global batch (with stable targets: every rank draws the same
    reference rows)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    worker = os.path.join(ROOT, "tests", "ddp_worker.py")
    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir(), single.mkdir()
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          worker, str(multi), str(reference_batch)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    run = subprocess.run([sys.executable, worker, str(single), str(reference_batch)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = torch.load(multi / "rank0.pt"), torch.load(multi / "rank1.pt")
    one = torch.load(single / "rank0.pt")
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0)
        torch.testing.assert_close(r0[key], one[key], rtol=1e-5, atol=1e-6)
    start = ResidualMLP  # the run moved the weights away from their initialisation
    torch.manual_seed(0)
    init = start(2, hidden=32, depth=2).state_dict()
    assert any(not torch.equal(init[k], r0[k]) for k in r0)


@pytest.mark.gpu
@pytest.mark.parametrize("reference_batch", [0, 256])
def test_cuda_graph_matches_eager_on_gpu(reference_batch):
    X = data(4096)
    runs = {}
    for graph in (False, True):
        torch.manual_seed(0)
        model = ResidualMLP(2, hidden=64, depth=2)
        t = Trainer(model, SCHED, batch_size=512, max_steps=200, device="cuda", cuda_graph=graph,
                    mixed_precision="no", reference_batch=reference_batch, verbose=False, log_every=50)
        runs[graph] = t.fit(X)
    # different random streams (graphs draw from the default CUDA generator): compare the losses
    a, b = runs[False].history[-1]["loss"], runs[True].history[-1]["loss"]
    assert abs(a - b) / a < 0.2
    assert runs[True]._graph is not None


@pytest.mark.gpu
def test_bf16_training_learns_on_gpu():
    t = make(device="cuda", max_steps=300, batch_size=512, log_every=100, mixed_precision="bf16")
    t.fit(data(4096))
    assert t.history[-1]["loss"] < t.history[0]["loss"]


@pytest.mark.gpu
def test_cuda_fast_path_is_on_by_default():
    """On CUDA the defaults give fused AdamW, bf16 autocast, a captured step and the data, the
    batch indices and the noise on the device (no host round trip per step)."""
    t = make(device="cuda", max_steps=50, batch_size=256).fit(data(2048))
    assert t.optimizer.defaults["fused"] and t.autocast and t._graph is not None
    assert t.X.device.type == "cuda" and t.generator.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in t.ema_model.parameters())
    assert t.history[-1]["loss"] < t.history[0]["loss"]


@pytest.mark.gpu
def test_compiled_step_trains_like_the_eager_one_on_gpu():
    """compile=True (torch.compile of the loss, inside the CUDA graph) changes the kernels, not the
    arithmetic: from the same weights and seed the loss curve follows the uncompiled one."""
    runs = {}
    for comp in (False, True):
        t = make(device="cuda", max_steps=200, batch_size=512, log_every=50, compile=comp).fit(data(4096))
        runs[comp] = [h["loss"] for h in t.history]
        assert t._graph is not None
    assert runs[True][-1] < runs[True][0]
    for a, b in zip(runs[False], runs[True]):
        assert abs(a - b) / a < 0.1, (runs[False], runs[True])


def test_compile_must_be_a_bool():
    with pytest.raises(ValueError, match="compile="):
        make(compile="yes")
