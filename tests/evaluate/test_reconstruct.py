"""The decoder learns: from y of a random-init encoder, trained reconstructions beat untrained ones."""

import pytest
import torch

from dimctl.data.dataset import ImageDataset
from dimctl.data.registry import load_dataset
from dimctl.errors import UsageError
from dimctl.evaluate.reconstruct import train_decoder
from dimctl.models.encoders import EncoderConfig, build_encoder


@pytest.fixture(scope="module")
def small_digits():
    # 128 training and 32 test digits: the decoder is ~400 M multiply-adds per image, so this keeps
    # three epochs to seconds on two CPU cores.
    digits = load_dataset("digits")
    return ImageDataset("digits", digits.train_images[:128], digits.train_labels[:128],
                        digits.test_images[:32], digits.test_labels[:32])


@pytest.fixture(scope="module")
def random_encoder():
    torch.manual_seed(0)
    return build_encoder(EncoderConfig()).eval()


def test_trained_decoder_beats_untrained(small_digits, random_encoder):
    untrained = train_decoder(random_encoder, small_digits, "y", epochs=0, batch_size=32, seed=0)
    progress = []
    trained = train_decoder(random_encoder, small_digits, "y", epochs=3, batch_size=32, seed=0,
                            on_progress=progress.append)
    assert untrained.train_curve == [] and untrained.steps == 0
    assert trained.steps == 12 and len(trained.train_curve) == 3
    assert trained.train_curve[-1] < trained.train_curve[0]
    assert trained.ms_ssim > untrained.ms_ssim + 0.3 and trained.ms_ssim > 0.5, (trained.ms_ssim, untrained.ms_ssim)
    assert trained.mse < untrained.mse
    assert [p.step for p in progress] == list(range(1, 13))
    assert [p.epoch for p in progress if p.epoch_done] == [0, 1, 2]
    assert progress[-1].train_mse == pytest.approx(trained.train_curve[-1])
    assert trained.config.in_features == 64 and trained.config.out_channels == 1 and trained.config.source_layer == "y"
    assert trained.originals.shape == trained.reconstructions.shape == (8, 1, 32, 32)
    assert trained.originals.min() >= -1 and trained.originals.max() <= 1


def test_refuses_unknown_layers_and_oversized_batches(small_digits, random_encoder):
    with pytest.raises(UsageError, match="cannot decode layer 'local'"):
        train_decoder(random_encoder, small_digits, "local", epochs=0)
    with pytest.raises(UsageError, match="fewer than one batch"):
        train_decoder(random_encoder, small_digits, "y", epochs=1, batch_size=256)
