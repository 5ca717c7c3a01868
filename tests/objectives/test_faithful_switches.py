"""The switches to the authors' choices where dimctl departs from them (--score-scale,
--shortcut-init, --prior-penalty-on): each changes exactly what it says, the defaults are
dimctl's, and pretrain takes them, records them in config.json and refuses bad values by name."""

import json
import math

import pytest
import torch

from dimctl.cli.main import run
from dimctl.methods.dim import DIMModel
from dimctl.models.heads import LocalEmbedding, MapEmbedding, VectorEmbedding, dot_scores
from dimctl.objectives import prior
from dimctl.objectives.dim import DIMConfig, DIMHeads
from dimctl.train.config import PretrainConfig

TAPS = {"local": (8, 6, 6), "y": (6,)}


def test_score_scale_none_is_the_raw_dot_product():
    g, local = torch.randn(5, 32), torch.randn(5, 3, 32)
    raw = dot_scores(g, local, scaled=False)
    torch.testing.assert_close(raw, torch.einsum("iu,jmu->ijm", g, local))
    torch.testing.assert_close(dot_scores(g, local), raw / math.sqrt(32))


@pytest.mark.parametrize("alpha, beta, term", [(0.0, 1.0, "local_mi"), (1.0, 0.0, "global_mi")])
def test_score_scale_changes_only_the_scale_of_the_scores(alpha, beta, term):
    from dimctl.models.encoders import EncoderConfig, build_encoder

    encoder = build_encoder(EncoderConfig(in_channels=1, image_size=32, width=0.125, fc_dim=16, y_dim=6)).eval()
    taps = {"local": tuple(encoder(torch.zeros(2, 1, 32, 32))["local"].shape[1:]), "y": (6,)}
    x = torch.rand(6, 1, 32, 32)
    by_scale = {}
    for scale in ("sqrt", "none"):
        torch.manual_seed(0)
        heads = DIMHeads(DIMConfig(alpha=alpha, beta=beta, mi_units=16, estimator="dv", score_scale=scale), taps).eval()
        by_scale[scale] = heads
    # Same weights (same seed): the raw scores are sqrt(units) × the scaled ones, so the bounds differ.
    for a, b in zip(by_scale["sqrt"].parameters(), by_scale["none"].parameters()):
        assert torch.equal(a, b)
    g, local = torch.randn(6, 16), torch.randn(6, 4, 16)
    torch.testing.assert_close(by_scale["none"]._scores(g, local), by_scale["sqrt"]._scores(g, local) * 4.0)
    with torch.no_grad():
        scaled = DIMModel(encoder, by_scale["sqrt"])(x).terms[term]
        raw = DIMModel(encoder, by_scale["none"])(x).terms[term]
    assert not torch.isclose(scaled, raw)


@pytest.mark.parametrize("module", [lambda init: VectorEmbedding(12, 20, identity_shortcut=init),
                                    lambda init: LocalEmbedding(12, 8, identity_shortcut=init),
                                    lambda init: MapEmbedding(12, 6, 40, identity_shortcut=init).embed])
def test_identity_shortcut_is_the_authors_init_and_leaves_the_rest(module):
    torch.manual_seed(0)
    default = module(False)
    torch.manual_seed(0)
    identity = module(True)
    assert default.shortcut.bias is not None and identity.shortcut.bias is None
    weight = identity.shortcut.weight
    diagonal = torch.diagonal(weight)
    assert torch.equal(diagonal, torch.ones_like(diagonal))
    off = weight[~torch.eye(*weight.shape, dtype=torch.bool)]
    assert 0 < off.abs().max() <= 0.01  # noise, not zeros
    # The block (built before the shortcut, from the same seed) and the norm are untouched.
    for (name, a), b in zip(default.block.state_dict().items(), identity.block.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(default.norm.weight, identity.norm.weight)


def test_heads_take_the_shortcut_init_from_the_config():
    heads = DIMHeads(DIMConfig(alpha=1.0, beta=1.0, mi_units=16, shortcut_init="identity"), TAPS)
    shortcuts = [heads.local_map.shortcut, heads.local_y.shortcut, heads.global_map.embed.shortcut,
                 heads.global_y.shortcut]
    assert all(s.bias is None for s in shortcuts)
    assert all(s.bias is not None for s in (DIMHeads(DIMConfig(mi_units=16), TAPS).local_y.shortcut,))


def _penalty(discriminator, points):
    points = points.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(points).sum(), points)
    return grad.pow(2).sum(dim=1).mean()


def test_prior_penalty_on_both_averages_the_prior_and_encoded_penalties():
    from dimctl.models.discriminators import PriorDiscriminator

    torch.manual_seed(0)
    discriminator = PriorDiscriminator(6)
    encoded = torch.sigmoid(torch.randn(16, 6))
    samples = {}

    def sample(like):  # the same prior samples for every call
        return samples.setdefault("v", torch.rand_like(like)).clone()

    gan = prior.discriminator_loss(discriminator, encoded, 0.0, sample)
    on_prior = prior.discriminator_loss(discriminator, encoded, 2.0, sample, "prior")
    on_both = prior.discriminator_loss(discriminator, encoded, 2.0, sample, "both")
    p_prior, p_encoded = _penalty(discriminator, samples["v"]), _penalty(discriminator, encoded)
    assert p_prior > 0 and p_encoded > 0 and not torch.isclose(p_prior, p_encoded)
    torch.testing.assert_close(on_prior, gan + 2.0 * p_prior)
    torch.testing.assert_close(on_both, gan + 2.0 * (p_prior + p_encoded) / 2)
    with pytest.raises(ValueError, match="penalty_on"):
        prior.discriminator_loss(discriminator, encoded, 2.0, sample, "encoded")


def test_the_defaults_are_dimctls():
    config = PretrainConfig()
    assert (config.objective.score_scale, config.objective.shortcut_init, config.objective.prior_penalty_on) == (
        "sqrt", "default", "prior")


TINY = ["--epochs", "1", "--mi-units", "8", "--width", "0.125", "--fc-dim", "16", "--precision", "fp32",
        "--checkpoint-every", "0", "--batch-size", "128"]


def test_pretrain_takes_the_switches_and_records_them(tmp_path, capsys):
    switches = ["--score-scale", "none", "--shortcut-init", "identity", "--prior-penalty-on", "both"]
    assert run(["pretrain", *TINY, *switches, "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert (config["score_scale"], config["shortcut_init"], config["prior_penalty_on"]) == ("none", "identity", "both")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(m["loss"]) for m in metrics)


@pytest.mark.parametrize("args, message", [
    (["--score-scale", "cube"], "--score-scale 'cube' is not one of: sqrt, none"),
    (["--shortcut-init", "zero"], "--shortcut-init 'zero' is not one of: default, identity"),
    (["--prior-penalty-on", "encoded"], "--prior-penalty-on 'encoded' is not one of: prior, both"),
    (["--method", "cpc", "--score-scale", "none"], "--score-scale is a DIM option; --method cpc does not use it"),
])
def test_bad_switches_are_refused_by_name(tmp_path, capsys, args, message):
    assert run(["pretrain", *TINY, *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
