"""`dimctl generate score`'s numbers: generated images against real ones.

    dimctl generate score runs/gen-ie/generator.safetensors --features runs/dim/encoder.safetensors -n 2000

``encoder_frechet_distances``: the Fréchet distance between Gaussians fitted to a DIM encoder's
features of the generated and of the real images, per layer (not FID: its scale depends on the
encoder). ``inception_scores``: FID in the FID Inception network's pool features and the
Inception score of its class probabilities (evaluate/frechet.py).
"""

from dataclasses import dataclass

import torch
from torch import nn

from dimctl.evaluate.extract import extract_layer
from dimctl.evaluate.frechet import frechet_distance_of, inception_score, network_outputs


def encoder_frechet_distances(encoder: nn.Module, generated: torch.Tensor, real: torch.Tensor, layers: list[str],
                              batch_size: int, device: torch.device | str) -> dict[str, float]:
    """Layer → Fréchet distance of ``generated`` and ``real`` uint8 images in the encoder's features.
    Raises KeyError for a layer the encoder does not have."""
    return {layer: frechet_distance_of(extract_layer(encoder, generated, layer, batch_size, device),
                                       extract_layer(encoder, real, layer, batch_size, device))
            for layer in layers}


@dataclass
class InceptionScores:
    fid: float
    inception_score: float
    inception_score_std: float  # over the splits


def inception_scores(network: nn.Module, generated: torch.Tensor, real: torch.Tensor, batch_size: int,
                     device: torch.device | str, splits: int) -> InceptionScores:
    fake_pool, fake_probabilities = network_outputs(network, generated, batch_size, device)
    real_pool, _ = network_outputs(network, real, batch_size, device)
    mean, std = inception_score(fake_probabilities, splits)
    return InceptionScores(frechet_distance_of(fake_pool, real_pool), mean, std)
