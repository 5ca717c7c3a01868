import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dimctl.models.encoders import EncoderConfig, build_encoder, tap_shapes
from dimctl.models import heads
from dimctl.models.heads import LocalEmbedding, VectorEmbedding, dot_scores


@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_encoder_taps(channels):
    encoder = build_encoder(EncoderConfig(in_channels=channels))
    out = encoder(torch.randn(5, channels, 32, 32))
    assert out["local"].shape == (5, 128, 8, 8)
    assert out["conv"].shape == (5, 256, 4, 4)
    assert out["fc"].shape == (5, 1024)
    assert out["y"].shape == (5, 64)
    assert tap_shapes(EncoderConfig(in_channels=channels))["y"] == (64,)


def test_encoder_rejects_other_sizes_and_archs():
    with pytest.raises(ValueError):
        build_encoder(EncoderConfig(image_size=64))
    with pytest.raises(ValueError):
        build_encoder(EncoderConfig(arch="vgg"))


class _CountMatmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in ("mm", "bmm", "addmm", "matmul", "baddbmm"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_dot_scores_is_one_matrix_product_and_matches_pairwise():
    torch.manual_seed(0)
    g, l = torch.randn(6, 16), torch.randn(6, 10, 16)
    with _CountMatmuls() as counter:
        scores = dot_scores(g, l)
    assert counter.count == 1
    assert scores.shape == (6, 6, 10)
    for i in range(6):
        for j in range(6):
            for m in range(10):
                assert scores[i, j, m].item() == pytest.approx((g[i] @ l[j, m]).item() / 4.0, abs=1e-5)


def test_embeddings_shapes():
    assert LocalEmbedding(128, 32)(torch.randn(3, 128, 8, 8)).shape == (3, 64, 32)
    assert VectorEmbedding(64, 32)(torch.randn(3, 64)).shape == (3, 32)


def test_local_embedding_is_the_papers_1x1_conv_block_and_loads_its_weights():
    """The linear LocalEmbedding computes the 1×1-conv block (conv → BN → ReLU → conv + 1×1 shortcut,
    LayerNorm over channels) at every location, and loads a state dict in the conv layout."""
    torch.manual_seed(0)
    c, units = 12, 16
    conv = torch.nn.ModuleDict({
        "block": torch.nn.Sequential(torch.nn.Conv2d(c, units, 1, bias=False), torch.nn.BatchNorm2d(units),
                                     torch.nn.ReLU(), torch.nn.Conv2d(units, units, 1)),
        "shortcut": torch.nn.Conv2d(c, units, 1), "norm": torch.nn.LayerNorm(units)})
    with torch.no_grad():
        conv["block"][1].weight.uniform_(0.5, 1.5)
        conv["block"][1].bias.normal_()
    embedding = LocalEmbedding(c, units)
    embedding.load_state_dict(conv.state_dict())
    x = torch.randn(4, c, 5, 3)
    for train in (True, False):  # batch statistics, then the running ones both updated the same way
        conv.train(train), embedding.train(train)
        h = conv["block"](x) + conv["shortcut"](x)
        expected = conv["norm"](h.flatten(2).transpose(1, 2))  # (N, H·W, U)
        torch.testing.assert_close(embedding(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedding.block[1].running_mean, conv["block"][1].running_mean)
    torch.testing.assert_close(embedding.block[1].running_var, conv["block"][1].running_var)


def _plain_and_wide(make, monkeypatch):
    """Two copies of one embedding: one that always runs the plain layers, one the wide form."""
    torch.manual_seed(0)
    plain, wide = make(), make()
    wide.load_state_dict(plain.state_dict())
    with torch.no_grad():  # a BatchNorm away from its init, so scale and shift both matter
        for module in (plain, wide):
            module.block[1].weight.copy_(torch.linspace(0.5, 1.5, module.block[1].num_features))
            module.block[1].bias.copy_(torch.linspace(-1, 1, module.block[1].num_features))

    def run(module, x, wide_form):
        monkeypatch.setattr(heads, "WIDE_MIN_ACTIVATIONS", 0 if wide_form else 1 << 62)
        return module(x)
    return plain, wide, run


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_locations_are_the_maps_rows_and_send_the_gradient_back_in_the_maps_layout(layout):
    # The gradient reaching the map must be laid out as the map is: the next convolution's is, and
    # the ReLU before the map adds and masks the two (mixed layouts run 5-19x slower).
    leaf = torch.randn(3, 5, 4, 2, dtype=torch.float64, requires_grad=True)
    x = leaf.contiguous(memory_format=layout) * 1.0
    seen = []
    x.register_hook(seen.append)
    rows = heads.Locations.apply(x)
    assert torch.equal(rows, x.detach().flatten(2).transpose(1, 2).reshape(-1, 5))
    grad = torch.randn_like(rows)
    rows.backward(grad)
    (arrived,) = seen
    assert arrived.is_contiguous(memory_format=layout)
    assert torch.equal(arrived, grad.view(3, 4, 2, 5).permute(0, 3, 1, 2))


@pytest.mark.parametrize("identity", [False, True])
def test_wide_embedding_is_the_same_function_gradients_and_running_stats(monkeypatch, identity):
    """BatchNorm folded into the first product, biases carried by a column of ones, the residual
    summed inside the second product: the outputs, every gradient and the BN buffers agree with
    the plain layers, in training (batch statistics) and in evaluation (running ones)."""
    plain, wide, run = _plain_and_wide(lambda: VectorEmbedding(12, 24, identity_shortcut=identity), monkeypatch)
    x = (torch.randn(50, 12) * 3 + 2).requires_grad_()  # off-centre input: the covariance must centre it
    for step in range(3):  # three updates of the running statistics
        a, b = run(plain, x, False), run(wide, x, True)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        weights = torch.randn_like(a)
        grads_a = torch.autograd.grad((a * weights).sum(), [x, *plain.parameters()])
        grads_b = torch.autograd.grad((b * weights).sum(), [x, *wide.parameters()])
        for name, ga, gb in zip(["x", *dict(plain.named_parameters())], grads_a, grads_b):
            torch.testing.assert_close(gb, ga, atol=1e-4, rtol=1e-4, msg=name)
    for name, buffer in plain.block[1].named_buffers():
        torch.testing.assert_close(dict(wide.block[1].named_buffers())[name], buffer, msg=name)
    plain.eval(), wide.eval()
    with torch.no_grad():
        torch.testing.assert_close(run(wide, x, True), run(plain, x, False), atol=1e-5, rtol=1e-5)


def test_wide_local_embedding_in_bf16_autocast_matches_and_trains_every_weight(monkeypatch):
    plain, wide, run = _plain_and_wide(lambda: LocalEmbedding(16, 64), monkeypatch)
    x = torch.randn(8, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = run(plain, x, False), run(wide, x, True)
    assert b.dtype == a.dtype
    torch.testing.assert_close(b.float(), a.float(), atol=0.06, rtol=0.05)  # bf16 rounding, in other places
    b.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and p.grad.abs().sum() > 0
               for p in wide.parameters())


def test_wide_form_is_chosen_by_size_and_never_with_a_sync_batchnorm_or_under_compile(monkeypatch):
    calls = []
    monkeypatch.setattr(VectorEmbedding, "_wide", lambda self, x: calls.append(x.shape[0]) or self.block(x))
    embedding = VectorEmbedding(4, 16)
    embedding(torch.randn(heads.WIDE_MIN_ACTIVATIONS // 16, 4))
    embedding(torch.randn(heads.WIDE_MIN_ACTIVATIONS // 16 - 1, 4))
    assert calls == [heads.WIDE_MIN_ACTIVATIONS // 16]
    embedding.block[1] = torch.nn.SyncBatchNorm(16)
    embedding.eval()  # SyncBatchNorm in training needs a process group; the choice is what is tested
    embedding(torch.randn(heads.WIDE_MIN_ACTIVATIONS // 16, 4))
    assert len(calls) == 1
    # Under torch.compile the plain layers run: inductor (torch 2.14, CPU, bf16) compiled the wide
    # form into NaN scores at step 1 of `pretrain --compile` at the paper's 2048 units.
    embedding.block[1] = torch.nn.BatchNorm1d(16)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    embedding(torch.randn(heads.WIDE_MIN_ACTIVATIONS // 16, 4))
    assert len(calls) == 1


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv2d_takes_the_weight_gradient_in_fp32_under_cpu_bf16_autocast(channels_last, monkeypatch):
    from dimctl.models import conv
    from dimctl.models.conv import Conv2d

    monkeypatch.setattr(conv, "cpu_flags", lambda: frozenset({"avx512_bf16"}))  # a CPU without AMX
    torch.manual_seed(0)
    ours, reference = Conv2d(6, 8, 4, stride=2, padding=1), torch.nn.Conv2d(6, 8, 4, stride=2, padding=1)
    ours.load_state_dict(reference.state_dict())  # the same parameters and state dict as nn.Conv2d
    x = torch.randn(5, 6, 12, 12)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run(conv, bf16):
        conv.zero_grad()
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = conv(inp)
        out.float().pow(2).sum().backward()
        return out, inp.grad, conv.weight.grad, conv.bias.grad

    exact = run(reference, False)
    assert all(torch.equal(a, b) for a, b in zip(run(ours, False), exact))  # outside bf16 autocast: nn.Conv2d
    out, *grads = run(ours, True)
    assert out.dtype == torch.bfloat16 and grads[1].dtype == torch.float32
    for value, truth in zip([out, *grads], exact):  # bf16 round-off of the inputs, nothing more
        assert ((value.float() - truth).norm() / truth.norm()).item() < 1e-2


@pytest.mark.parametrize("flags, custom", [({"avx512_bf16"}, True), ({"avx512_bf16", "amx_bf16"}, False)])
def test_conv2d_keeps_onednns_bf16_weight_gradient_where_amx_makes_it_fast(monkeypatch, flags, custom):
    from dimctl.models import conv

    monkeypatch.setattr(conv, "cpu_flags", lambda: frozenset(flags))
    calls = []
    real = conv._BF16ConvFP32WeightGrad.apply
    monkeypatch.setattr(conv._BF16ConvFP32WeightGrad, "apply", lambda *a: calls.append(1) or real(*a))
    layer, x = conv.Conv2d(3, 4, 3), torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    out.float().sum().backward()
    assert bool(calls) == custom and out.dtype == torch.bfloat16 and layer.weight.grad.dtype == torch.float32


def test_uniform_mask_dropout_is_dropout():
    """The probe's dropout: drops a fraction p, scales survivors by 1/(1-p), passes gradients only
    through survivors, and is the identity in eval mode (and on the same RNG state, repeatable)."""
    from dimctl.models.classifier import UniformMaskDropout, paper_classifier

    drop = UniformMaskDropout(0.1)
    x = torch.randn(400, 200, requires_grad=True)
    torch.manual_seed(0)
    out = drop(x)
    kept = out.detach() != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.01
    assert torch.allclose(out.detach()[kept], x.detach()[kept] / 0.9)
    out.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.9)
    torch.manual_seed(0)
    assert torch.equal(drop(x), out)
    drop.eval()
    assert torch.equal(drop(x), x)
    assert isinstance(paper_classifier(8, 3)[1], UniformMaskDropout)
