import json

import pytest
import torch
from safetensors.torch import save_file

from dimctl.errors import ArtifactError
from dimctl.io.artifacts import load_decoder, load_encoder, read_metadata, save_decoder, save_encoder
from dimctl.models.decoders import DecoderConfig, build_decoder
from dimctl.models.encoders import EncoderConfig, build_encoder

DATASET = {"name": "digits", "channels": 1, "image_size": 32}


def _trained_looking_decoder(config):
    decoder = build_decoder(config)
    with torch.no_grad():  # running statistics away from their defaults, so the round trip must carry them
        for m in decoder.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
    return decoder.eval()


def test_decoder_round_trip_with_metadata(tmp_path):
    config = DecoderConfig(in_features=1024, out_channels=1, source_layer="fc")
    decoder = _trained_looking_decoder(config)
    path = save_decoder(tmp_path / "dec.safetensors", decoder, config, encoder_sha256="ab" * 32,
                        encoder_path="runs/x/encoder.safetensors", layer="fc", dataset=DATASET, step=12)
    loaded = load_decoder(path)
    assert loaded.config == config and loaded.dataset == DATASET
    assert loaded.encoder == {"sha256": "ab" * 32, "path": "runs/x/encoder.safetensors", "layer": "fc"}
    metadata, _ = read_metadata(path)
    assert metadata["dimctl.kind"] == "decoder" and metadata["dimctl.schema"] == "1" and metadata["dimctl.step"] == "12"
    assert json.loads(metadata["dimctl.config"])["source_layer"] == "fc" and "dimctl.version" in metadata
    features = torch.randn(2, 1024)
    with torch.no_grad():
        assert torch.equal(decoder(features), loaded.decoder(features))
    assert not loaded.decoder.training and len(loaded.sha256) == 64


def test_wrong_kind_is_an_artifact_error_both_ways(tmp_path):
    config = EncoderConfig()
    encoder_path = save_encoder(tmp_path / "enc.safetensors", build_encoder(config), config, DATASET, step=0)
    with pytest.raises(ArtifactError, match="holds a dimctl encoder, not a decoder"):
        load_decoder(encoder_path)
    decoder_config = DecoderConfig(in_features=64, out_channels=1)
    decoder_path = save_decoder(tmp_path / "dec.safetensors", build_decoder(decoder_config), decoder_config,
                                "ab" * 32, encoder_path, "y", DATASET, step=0)
    with pytest.raises(ArtifactError, match="holds a dimctl decoder, not an encoder"):
        load_encoder(decoder_path)


def test_foreign_old_and_lying_decoders_are_artifact_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ArtifactError, match="make decoders with `dimctl reconstruct`"):
        load_decoder(plain)
    config = DecoderConfig(in_features=64, out_channels=1)
    path = save_decoder(tmp_path / "dec.safetensors", build_decoder(config), config, "ab" * 32, "e", "y", DATASET, step=0)
    metadata, _ = read_metadata(path)
    tensors = build_decoder(config).state_dict()
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**metadata, "dimctl.schema": "0"})
    with pytest.raises(ArtifactError, match="decoder schema '0'"):
        load_decoder(tmp_path / "old.safetensors")
    lying_config = json.dumps({**config.to_dict(), "in_features": 99})
    save_file(tensors, str(tmp_path / "lying.safetensors"), metadata={**metadata, "dimctl.config": lying_config})
    with pytest.raises(ArtifactError, match="do not match the decoder"):
        load_decoder(tmp_path / "lying.safetensors")
    no_encoder = {k: v for k, v in metadata.items() if k != "dimctl.encoder"}
    save_file(tensors, str(tmp_path / "orphan.safetensors"), metadata=no_encoder)
    with pytest.raises(ArtifactError, match="broken"):
        load_decoder(tmp_path / "orphan.safetensors")
