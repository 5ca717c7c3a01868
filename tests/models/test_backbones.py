"""torchvision backbones as DIM encoders (models/backbones.py): the local/global contract on every
family, the 8×8 rule for the local stage, the CIFAR stem, grey inputs, local state dicts, the
header that rebuilds them, and the refusals at start-up."""

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from dimctl.io.artifacts import load_encoder, save_encoder
from dimctl.models.backbones import load_backbone_weights, stages
from dimctl.models.encoders import EncoderConfig, build_encoder
from tests.cli.helpers import assert_one_line_error, run_here


@pytest.mark.parametrize("name, stem, local, shapes", [
    ("resnet18", "cifar", "layer3", {"local": (256, 8, 8), "conv": (512, 4, 4)}),
    ("resnet18", "imagenet", "layer1", {"local": (64, 8, 8), "conv": (512, 1, 1)}),
    ("mobilenet_v3_small", "imagenet", "features.1", {"local": (16, 8, 8), "conv": (576, 1, 1)}),
    ("efficientnet_b0", "imagenet", "features.2", {"local": (24, 8, 8), "conv": (1280, 1, 1)}),
    ("regnet_y_400mf", "imagenet", "trunk_output.block1", {"local": (48, 8, 8), "conv": (440, 1, 1)}),
    ("convnext_tiny", "imagenet", "features.1", {"local": (96, 8, 8), "conv": (768, 1, 1)}),
    ("wide_resnet50_2", "cifar", "layer3", {"local": (1024, 8, 8), "conv": (2048, 4, 4)}),
    ("resnext50_32x4d", "imagenet", "layer1", {"local": (256, 8, 8), "conv": (2048, 1, 1)}),
])
def test_every_family_keeps_the_local_and_global_contract(name, stem, local, shapes):
    torch.manual_seed(0)
    config = EncoderConfig(arch=f"torchvision:{name}", in_channels=1, image_size=32, stem=stem, fc_dim=32, y_dim=16)
    assert config.local_layer == local and config.library_version == torchvision.__version__
    encoder = build_encoder(config).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        out = encoder(x)
        split = {"local": encoder.encode_local(x), **encoder.summarise(encoder.encode_local(x))}
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {**shapes, "fc": (32,), "y": (16,)}
    for tap in out:
        torch.testing.assert_close(out[tap], split[tap])


@pytest.mark.parametrize("name, local", [("resnet18", "layer1"), ("efficientnet_b0", "blocks.1"),
                                         ("convnext_atto", "stages_0")])
def test_timm_models_keep_the_contract_too(name, local):
    pytest.importorskip("timm")
    config = EncoderConfig(arch=f"timm:{name}", in_channels=1, image_size=32, fc_dim=32, y_dim=16)
    assert config.local_layer == local
    encoder = build_encoder(config).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out, local_map = encoder(x), encoder.encode_local(x)
        torch.testing.assert_close(out["y"], encoder.summarise(local_map)["y"])
    assert out["local"].shape[-2:] == (8, 8) and out["y"].shape == (2, 16)


def test_without_timm_its_backbones_name_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    result = run_here("pretrain", "--arch", "timm:resnet18", "--out", tmp_path / "run")
    assert_one_line_error(result, 2)
    assert "pip install 'dimctl[timm]'" in result.stderr.decode()


def test_a_larger_image_moves_the_local_stage_and_the_header_rebuilds_the_cut(tmp_path):
    config = EncoderConfig(arch="torchvision:resnet18", in_channels=3, image_size=64, stem="cifar", fc_dim=32)
    assert config.local_layer == "layer4"  # 64 → 64, 32, 16, 8
    encoder = build_encoder(config).eval()
    path = save_encoder(tmp_path / "enc.safetensors", encoder, config, {"name": "folder"}, step=0)
    loaded = load_encoder(path)
    assert loaded.config == config
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encoder(x)["y"], encoder(x)["y"])


def test_local_state_dicts_load_into_the_trunk_or_are_refused_by_name(tmp_path):
    config = EncoderConfig(arch="torchvision:resnet18", in_channels=3, image_size=32, fc_dim=32)
    classifier = torchvision.models.resnet18(weights=None)  # stands for a user's ImageNet weights
    save_file(classifier.state_dict(), str(tmp_path / "r18.safetensors"))
    encoder = build_encoder(config)
    load_backbone_weights(encoder, tmp_path / "r18.safetensors")
    torch.testing.assert_close(encoder.trunk["layer4"][1].conv2.weight, classifier.layer4[1].conv2.weight)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="not a state dict of this torchvision:resnet18"):
        load_backbone_weights(build_encoder(config), tmp_path / "r34.pth")
    assert [name for name, _ in stages(classifier)][-4:] == ["layer1", "layer2", "layer3", "layer4"]


def test_timm_state_dicts_load_through_timm_adapted_to_grey_or_are_refused_by_name(tmp_path):
    timm = pytest.importorskip("timm")
    classifier = timm.create_model("resnet18", pretrained=False)  # stands for a user's ImageNet weights
    save_file(classifier.state_dict(), str(tmp_path / "r18.safetensors"))
    for channels in (3, 1):
        config = EncoderConfig(arch="timm:resnet18", in_channels=channels, image_size=32, fc_dim=32, y_dim=16)
        encoder = build_encoder(config)
        load_backbone_weights(encoder, tmp_path / "r18.safetensors")
        torch.testing.assert_close(encoder.trunk["layer4"][1].conv2.weight, classifier.layer4[1].conv2.weight)
        stem = classifier.conv1.weight if channels == 3 else classifier.conv1.weight.sum(1, keepdim=True)
        torch.testing.assert_close(encoder.trunk["conv1"].weight, stem)  # timm's grey adaptation
    # Through pretrain (--epochs 0 publishes the start): digits are grey, so the stem was adapted.
    result = run_here("pretrain", "--arch", "timm:resnet18", "--backbone-weights", tmp_path / "r18.safetensors",
                      "--dataset", "digits", "--epochs", "0", "--fc-dim", "16", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr.decode()
    published = load_encoder(tmp_path / "run" / "encoder.safetensors").encoder
    torch.testing.assert_close(published.trunk["conv1"].weight, classifier.conv1.weight.sum(1, keepdim=True))
    # A flattened stage (features_only names stages.0 "stages_0") is found under its new name.
    convnext = timm.create_model("convnext_atto", pretrained=False)
    save_file(convnext.state_dict(), str(tmp_path / "cn.safetensors"))
    encoder = build_encoder(EncoderConfig(arch="timm:convnext_atto", in_channels=3, image_size=32, fc_dim=8))
    load_backbone_weights(encoder, tmp_path / "cn.safetensors")
    torch.testing.assert_close(encoder.trunk["stages_3"].blocks[1].mlp.fc1.bias, convnext.stages[3].blocks[1].mlp.fc1.bias)
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="has a tensor this trunk lacks, 'layer1.2.conv1.weight'.*timm:resnet18"):
        load_backbone_weights(build_encoder(config), tmp_path / "r34.pth")


@pytest.mark.parametrize("args, message", [
    (["--arch", "torchvision:nope"], "torchvision has no classification model 'nope'"),
    (["--arch", "torchvision:vit_b_16"], "not a convolutional backbone"),
    (["--arch", "torchvision:mobilenet_v3_small", "--stem", "cifar"], "has none"),
    (["--arch", "torchvision:resnet18", "--local-layer", "layer9"], "stages: conv1, bn1, relu, maxpool, layer1"),
    (["--arch", "torchvision:resnet18", "--method", "ae", "--image-size", "64"], "32×32 DCGAN decoder"),
    (["--arch", "torchvision:resnet18", "--occlude"], "--occlude"),
    (["--arch", "torchvision:resnet18", "--width", "0.5"], "--width"),
    (["--arch", "torchvision:resnet18", "--image-size", "16"], "32 px or more"),
    (["--stem", "cifar"], "--stem is for torchvision ResNets"),
    (["--arch", "timm:resnet18", "--stem", "cifar"], "timm model keeps its own stem"),
    (["--arch", "timm:vit_tiny_patch16_224"], "not a sequence of stages"),
])
def test_what_cannot_apply_is_refused_before_anything_is_written(tmp_path, args, message):
    result = run_here("pretrain", *args, "--out", tmp_path / "run")
    assert_one_line_error(result, 2)
    assert message in result.stderr.decode() and not (tmp_path / "run").exists()


def test_pretrain_extract_probe_with_resnet18(tmp_path):
    """The whole chain on a real backbone: the header carries the cut, the other commands need nothing else."""
    out = tmp_path / "r18"
    # The ImageNet stem at 32 px: a few seconds on 2 cores (the CIFAR stem's 8× the compute is for real runs).
    result = run_here("pretrain", "--arch", "torchvision:resnet18", "--dataset", "digits",
                      "--epochs", "1", "--mi-units", "16", "--fc-dim", "32", "--batch-size", "128",
                      "--checkpoint-every", "0", "--out", out)
    assert result.returncode == 0, result.stderr.decode()
    assert load_encoder(out / "encoder.safetensors").config.local_layer == "layer1"
    assert run_here("extract", out, "--layer", "conv,y", "-o", tmp_path / "f.h5").returncode == 0
    probe = run_here("probe", tmp_path / "f.h5", "--json")
    assert probe.returncode == 0, probe.stderr.decode()
    import json

    rows = {row["layer"]: row for row in map(json.loads, probe.stdout.decode().splitlines())}
    assert rows["conv"]["dim"] == 512 and rows["conv"]["accuracy"] > 0.5


def test_a_backbone_exports_to_onnx_and_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime

    from dimctl.io.export import export_onnx

    torch.manual_seed(0)
    config = EncoderConfig(arch="torchvision:mobilenet_v3_small", in_channels=1, image_size=32, fc_dim=32)
    path = save_encoder(tmp_path / "enc.safetensors", build_encoder(config).eval(), config,
                        {"name": "digits", "channels": 1, "image_size": 32}, step=0)
    artifact = load_encoder(path)
    export_onnx(artifact, ["local", "y"], tmp_path / "enc.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "enc.onnx"))
    x = torch.randn(4, 1, 32, 32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x.numpy()})))
    with torch.no_grad():
        want = artifact.encoder(x)
    for tap in ("local", "y"):
        assert np.abs(got[tap] - want[tap].numpy()).max() < 1e-4
