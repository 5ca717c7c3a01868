"""What every `dimctl pretrain --method` model gives the training loop.

A method is one ``nn.Module`` holding the encoder (``.encoder``) and every network that trains
beside it (heads, decoder, generator, summary network), so one forward, one DDP wrapper and one
checkpoint cover them all. It provides:

- ``forward(x, index=None) -> MethodStep``: Y of the batch, the named scalar terms to log, and
  what an adversary scores. ``index`` holds the batch's positions in the training split (NAT's
  targets follow images). Contrastive methods gather their embeddings over processes with
  gradient (train/distributed.py ``gather_with_grad``), so negatives come from the global batch.
- ``loss(terms)``: the loss of the encoder and its companions (without the adversarial part).
- optionally ``decoder``/``decoder_config`` or ``generator``/``generator_config``: networks the
  run publishes beside encoder.safetensors, as decoder.safetensors or generator.safetensors.

An adversary, when the method has one, is a separate discriminator network trained against the
method in the same backward pass (train/loop.py ``step_losses``): either prior matching of Y
(DIM's γ term, AAE), or BiGAN's joint discriminator of (image, code) pairs.
"""

from dataclasses import dataclass

import torch


@dataclass
class MethodStep:
    y: torch.Tensor
    terms: dict[str, torch.Tensor]
    # BiGAN: ((image, code) pairs of the data, (image, code) pairs of the generator); None for the rest.
    pairs: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
