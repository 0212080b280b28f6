"""Tests of anydiff.nn: shapes, zero initialisation, gradient flow, equivariance, conditioning,
embeddings, input checks and the FLOP count (against torch's own counter)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from anydiff.nn import (
    ConditionEmbedding,
    FourierFeatures,
    ResidualMLP,
    TimeEmbedding,
    Transformer,
    sinusoidal_features,
    transformer_flops,
)

B = 5


def small_mlp(dim=3, **kw):
    return ResidualMLP(dim, hidden=16, depth=2, **kw)


def small_transformer(channels=3, **kw):
    return Transformer(channels, width=16, depth=2, heads=2, mlp_ratio=2.0, **kw)


# name -> (constructor, data shape)
NETS = {"mlp": (small_mlp, (B, 3)), "mlp_fourier": (lambda **kw: small_mlp(fourier_features=4, **kw), (B, 3)),
        "transformer": (small_transformer, (B, 4, 3))}


def make(name, gen, perturb=True, **kw):
    """A small network and data for it; ``perturb`` randomises the zero-initialised parameters."""
    factory, shape = NETS[name]
    torch.manual_seed(0)
    model = factory(**kw)
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0.0, 0.2, generator=gen)
    return model, torch.randn(shape, generator=gen), torch.rand(B, generator=gen)


def labels(gen, num_classes=4):
    return torch.randint(0, num_classes, (B,), generator=gen)


KEEP = torch.tensor([True, False, True, False, False])


# --- shapes --------------------------------------------------------------------------------------

@settings(max_examples=8, deadline=None)
@given(b=st.integers(1, 4), d=st.integers(1, 6), kind=st.sampled_from(["sinusoidal", "fourier"]))
def test_mlp_shapes(b, d, kind):
    model = small_mlp(d, time_embedding=kind)
    out = model(torch.randn(b, d), torch.rand(b))
    assert out.shape == (b, d) and out.dtype == torch.float32


@settings(max_examples=8, deadline=None)
@given(b=st.integers(1, 4), d=st.integers(1, 6), width=st.integers(1, 9), classes=st.booleans())
def test_mlp_narrow_conditioning(b, d, width, classes):
    """``cond_width`` sets the width of c (time + class embedding) and of every FiLM layer's input;
    the residual stream keeps ``hidden``."""
    model = small_mlp(d, cond_width=width, **({"num_classes": 3} if classes else {}))
    assert model.conditioning.time.mlp[-1].out_features == width
    assert all(blk.film[-1].weight.shape == (2 * 16, width) for blk in model.blocks)
    out = model(torch.randn(b, d), torch.rand(b), torch.zeros(b, dtype=torch.long) if classes else None)
    assert out.shape == (b, d)
    assert small_mlp(d).conditioning.time.mlp[-1].out_features == 16  # the default: hidden


@settings(max_examples=8, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 6), c=st.integers(1, 4), ordered=st.booleans(),
       heads=st.integers(1, 3))
def test_transformer_shapes(b, n, c, ordered, heads):
    model = Transformer(c, width=5 * heads, depth=1, heads=heads,
                        num_tokens=n if ordered else None)  # odd widths too
    out = model(torch.randn(b, n, c), torch.rand(b))
    assert out.shape == (b, n, c)


# --- initialisation and gradients ----------------------------------------------------------------

@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("kw", [{}, {"num_classes": 4}, {"cond_dim": 2}])
def test_untrained_output_is_zero(name, kw, gen):
    model, x, t = make(name, gen, perturb=False, **kw)
    cond = None
    if kw:
        cond = labels(gen) if "num_classes" in kw else torch.randn(B, 2, generator=gen)
    assert torch.equal(model(x, t, cond), torch.zeros_like(x))


def test_adaln_gates_start_at_zero(gen):
    model, _, _ = make("transformer", gen, perturb=False)
    c = torch.randn(B, 1, 16, generator=gen)
    for block in model.blocks:
        assert not block.ada_ln[-1].weight.any() and not block.ada_ln[-1].bias.any()
        gates = block.ada_ln(c).chunk(6, dim=-1)[2::3]
        assert all(not g.any() for g in gates)
    assert not model.ada_ln_out(c).any()


@pytest.mark.parametrize("name", NETS)
def test_one_step_makes_output_nonzero(name, gen):
    model, x, t = make(name, gen, perturb=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ((model(x, t) - torch.randn_like(x)) ** 2).mean().backward()
    opt.step()
    assert model(x, t).abs().min() > 0


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("kw", [{"num_classes": 4}, {"cond_dim": 2}, {"time_embedding": "fourier"}])
def test_every_parameter_gets_a_gradient(name, kw, gen):
    model, x, t = make(name, gen, **kw)
    cond, keep = None, None
    if "num_classes" in kw or "cond_dim" in kw:
        cond = labels(gen) if "num_classes" in kw else torch.randn(B, 2, generator=gen)
        keep = KEEP
    (model(x, t, cond, cond_keep=keep) * torch.randn_like(x)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.any(), pname


# --- symmetry ------------------------------------------------------------------------------------

def test_transformer_is_permutation_equivariant(gen):
    model, x, t = make("transformer", gen)
    perm = torch.randperm(x.shape[1], generator=gen)
    torch.testing.assert_close(model(x[:, perm], t), model(x, t)[:, perm], atol=1e-5, rtol=0)


def test_transformer_with_num_tokens_is_not_equivariant(gen):
    model, x, t = make("transformer", gen, num_tokens=4)
    perm = torch.tensor([1, 0, 3, 2])
    assert (model(x[:, perm], t) - model(x, t)[:, perm]).abs().max() > 1e-4


# --- conditioning --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("kind", ["class", "vector"])
def test_conditioning_and_cond_keep(name, kind, gen):
    kw = {"num_classes": 4} if kind == "class" else {"cond_dim": 2}
    model, x, t = make(name, gen, **kw)
    cond = labels(gen) if kind == "class" else torch.randn(B, 2, generator=gen)
    with torch.no_grad():
        uncond, conditional = model(x, t), model(x, t, cond)
        mixed = model(x, t, cond, cond_keep=KEEP)
        mixed_float = model(x, t, cond, cond_keep=KEEP.float())
        assert (conditional - uncond).abs().amax(dim=tuple(range(1, x.ndim))).min() > 1e-6
        assert torch.equal(mixed[KEEP], conditional[KEEP])
        assert torch.equal(mixed[~KEEP], uncond[~KEEP])
        assert torch.equal(mixed_float, mixed)
        if kind == "class":
            assert torch.equal(model(x, t, torch.full((B,), -1)), uncond)
            other = (cond + 1) % 4
            assert (model(x, t, other) - conditional).abs().max() > 1e-6


def test_condition_embedding_null_row():
    emb = ConditionEmbedding(8, num_classes=3)
    out = emb(torch.tensor([-1, 3 - 1, -1]), 3)
    torch.testing.assert_close(out[0], emb.table.weight[3], rtol=0, atol=0)
    torch.testing.assert_close(emb(None, 2), emb.table.weight[3].expand(2, 8), rtol=0, atol=0)


# --- dropout, dtype, scalar time -----------------------------------------------------------------

@pytest.mark.parametrize("name", NETS)
def test_dropout_zero_train_equals_eval(name, gen):
    model, x, t = make(name, gen)
    train = model.train()(x, t)
    torch.testing.assert_close(model.eval()(x, t), train, rtol=0, atol=0)
    dropped, _, _ = make(name, gen, dropout=0.5)
    assert not torch.equal(dropped.train()(x, t), dropped.eval()(x, t))


@pytest.mark.parametrize("name", NETS)
def test_scalar_time_broadcasts(name, gen):
    model, x, _ = make(name, gen)
    ref = model(x, torch.full((B,), 0.3))
    assert torch.equal(model(x, 0.3), ref)
    assert torch.equal(model(x, torch.tensor(0.3)), ref)


@pytest.mark.parametrize("name", NETS)
def test_autocast_bfloat16_and_float64(name, gen):
    model, x, t = make(name, gen, num_classes=4)
    y = labels(gen)
    ref = model(x, t, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, y)
    assert out.dtype == x.dtype
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
    out64 = model.double()(x.double(), t.double(), y)
    torch.testing.assert_close(out64, ref.double(), rtol=1e-4, atol=1e-5)


# --- embeddings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
def test_time_features_deterministic_and_distinguish_nearby_t(kind):
    t = torch.tensor([0.0, 0.5, 0.501, 1.0])
    a, b = TimeEmbedding(32, kind), TimeEmbedding(32, kind)
    fa = a.features(t)
    assert torch.equal(fa, b.features(t))
    assert (fa[1] - fa[2]).norm() > 0.1
    assert a(t).shape == (4, 32) and TimeEmbedding(8, kind, hidden=5)(t).shape == (4, 5)


def test_sinusoidal_features_against_formula():
    dim, t = 6, 0.37
    got = sinusoidal_features(torch.tensor([t]), dim)[0]
    freqs = [10000 ** (-k / 3) for k in range(3)]
    want = [math.sin(1000 * t * f) for f in freqs] + [math.cos(1000 * t * f) for f in freqs]
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-4, atol=1e-5)


def test_fourier_features_leave_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    emb = TimeEmbedding(16, "fourier")
    emb.features(torch.rand(1))  # the buffer comes from a local generator
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), expected)
    assert emb.freqs.shape == (8,) and emb.freqs.std() > 4


# --- input checks --------------------------------------------------------------------------------

def bad_calls(gen):
    mlp, x2, t = make("mlp", gen)
    tr, x3, _ = make("transformer", gen)
    cls, _, _ = make("mlp", gen, num_classes=4)
    vec, _, _ = make("transformer", gen, cond_dim=2)
    ordered, _, _ = make("transformer", gen, num_tokens=4)
    return [
        ("dim=", lambda: mlp(torch.randn(B, 4), t)),
        ("channels=", lambda: tr(torch.randn(B, 4, 2), t)),
        ("x_t", lambda: tr(x2, t)),
        ("x_t", lambda: mlp(x3, t)),
        ("x_t", lambda: mlp(x2.long(), t)),
        ("cond", lambda: mlp(x2, t, labels(gen))),
        ("cond_keep", lambda: mlp(x2, t, cond_keep=KEEP)),
        ("cond", lambda: cls(x2, t, torch.full((B,), 4))),
        ("cond", lambda: cls(x2, t, torch.full((B,), -2))),
        ("cond", lambda: cls(x2, t, labels(gen).float())),
        ("cond", lambda: cls(x2, t, labels(gen)[:3])),
        ("cond_dim=", lambda: vec(x3, t, torch.randn(B, 3))),
        ("cond", lambda: vec(x3, t, torch.randint(0, 2, (B, 2)))),
        ("cond_keep", lambda: vec(x3, t, torch.randn(B, 2), cond_keep=KEEP[:2])),
        ("t ", lambda: mlp(x2, t[:2])),
        ("t ", lambda: mlp(x2, torch.rand(B, 1))),
        ("t ", lambda: mlp(x2, torch.arange(B))),
        ("num_tokens", lambda: ordered(torch.randn(B, 5, 3), t)),
    ]


def test_bad_inputs_raise_value_error_naming_the_argument(gen):
    for name, call in bad_calls(gen):
        with pytest.raises(ValueError, match=name):
            call()


@pytest.mark.parametrize("name, build", [
    ("heads", lambda: Transformer(3, width=10, heads=4)),
    ("num_classes", lambda: ResidualMLP(3, num_classes=2, cond_dim=2)),
    ("num_classes", lambda: ResidualMLP(3, num_classes=0)),
    ("num_tokens", lambda: Transformer(3, num_tokens=0)),
    ("cond_dim", lambda: Transformer(3, cond_dim=0)),
    ("time_embedding", lambda: ResidualMLP(3, time_embedding="learned")),
    ("dropout", lambda: Transformer(3, dropout=1.0)),
    ("mlp_ratio", lambda: Transformer(3, mlp_ratio=0.0)),
    ("dim", lambda: ResidualMLP(0)),
    ("fourier_features", lambda: ResidualMLP(3, fourier_features=-1)),
    ("fourier_features", lambda: ResidualMLP(3, fourier_features=True)),
    ("cond_width", lambda: ResidualMLP(3, cond_width=0)),
    ("scale", lambda: FourierFeatures(3, scale=0.0)),
    ("scale", lambda: FourierFeatures(3, scale=float("nan"))),
    ("n_frequencies", lambda: FourierFeatures(3, n_frequencies=0)),
    ("dim", lambda: TimeEmbedding(7)),
    ("n_tokens", lambda: transformer_flops(Transformer(3, width=8, depth=1, heads=2), 0)),
    ("model", lambda: transformer_flops(ResidualMLP(3), 4)),
])
def test_bad_constructor_arguments(name, build):
    with pytest.raises(ValueError, match=name):
        build()


# --- periodic input features --------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(b=st.integers(1, 4), d=st.integers(1, 5), k=st.integers(1, 6), scale=st.floats(0.05, 5.0),
       seed=st.integers(0, 2**31 - 1))
def test_fourier_features_match_brute_force(b, d, k, scale, seed):
    feats = FourierFeatures(d, k, scale, seed=seed).double()
    x = torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = feats(x)
    assert out.shape == (b, feats.out_dim) == (b, d * (1 + 2 * k))
    W = feats.freqs
    for i in range(b):
        expect = [x[i, j].item() for j in range(d)]
        expect += [math.sin(2 * math.pi * W[j, m].item() * x[i, j].item()) for j in range(d) for m in range(k)]
        expect += [math.cos(2 * math.pi * W[j, m].item() * x[i, j].item()) for j in range(d) for m in range(k)]
        assert torch.allclose(out[i], torch.tensor(expect, dtype=torch.float64), atol=1e-12)


def test_fourier_frequencies_are_seeded_and_scaled():
    state = torch.get_rng_state()
    a, b, c = FourierFeatures(4, 500, 0.5, seed=1), FourierFeatures(4, 500, 0.5, seed=1), FourierFeatures(4, 500, 0.5, seed=2)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is left alone
    assert torch.equal(a.freqs, b.freqs) and not torch.equal(a.freqs, c.freqs)
    # 2000 draws of N(0, 0.5^2): the sample sd is within 5 standard errors (0.5 / sqrt(2 * 2000) each)
    assert abs(a.freqs.std().item() - 0.5) < 5 * 0.5 / math.sqrt(4000)
    # a saved and reloaded network keeps its frequencies (they are a buffer in the state dict)
    net = ResidualMLP(2, hidden=8, depth=1, fourier_features=3)
    assert "features.freqs" in net.state_dict()


# --- FLOPs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, n", [({}, 7), ({"cond_dim": 3}, 5),
                                   ({"num_classes": 3, "num_tokens": 6}, 6)])
def test_transformer_flops_match_flop_counter(kw, n, gen):
    model = Transformer(4, width=24, depth=2, heads=3, mlp_ratio=3.0, **kw)
    cond = None
    if "cond_dim" in kw:
        cond = torch.randn(2, 3, generator=gen)
    elif "num_classes" in kw:
        cond = torch.tensor([0, 2])
    # The math backend runs attention as matmuls the counter sees (the fused CPU kernel it skips).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, n, 4, generator=gen), torch.rand(2, generator=gen), cond)
    counted = counter.get_total_flops() / 2
    assert abs(transformer_flops(model, n) - counted) <= 0.02 * counted


# --- CUDA graphs ---------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", NETS)
def test_forward_is_cuda_graph_capturable(name, gen):
    model, x, t = make(name, gen, num_classes=4)
    model = model.cuda()
    static = [x.cuda(), t.cuda(), labels(gen).cuda(), KEEP.cuda()]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(2):
            model(*static[:3], cond_keep=static[3])
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        out = model(*static[:3], cond_keep=static[3])
    new = [torch.randn_like(static[0]), torch.rand_like(static[1]), (static[2] + 1) % 4, ~static[3]]
    for s, v in zip(static, new):
        s.copy_(v)
    graph.replay()
    with torch.no_grad():
        torch.testing.assert_close(out, model(*new[:3], cond_keep=new[3]))
