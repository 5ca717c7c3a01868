"""What a `dimctl pretrain --method` is: a registry entry (``Method``) and the model it builds.

A ``Method`` owns everything about itself: its name and the paper's label (reports), one line of
help, the input size it needs, which objective weights it uses and their defaults, its default
estimator, how its objective settings resolve (``resolve``) and its run folder is named
(``run_name``), its own checks of a config (``validate``), the networks it builds (``build``: model
and adversary), the adversary's two losses (``adversary_losses``: the model's part and the
discriminator's, summed by the loop), the networks it publishes beside the encoder
(``companions``), and how a report names a run of it (``family``, ``describe``, ``paper_name``,
``variants``). Nothing outside its module asks which method it is: adding a method is a module
with a ``Method`` subclass and its model, plus one ``register_method`` call (methods/__init__.py).

Its model is one ``nn.Module`` holding the encoder (``.encoder``) and every network that trains
beside it (heads, decoder, generator, summary network), so one forward, one DDP wrapper and one
checkpoint cover them all. It provides:

- ``forward(x, index=None) -> MethodOutput``: Y of the batch, the named scalar terms to log, its
  loss, and what its own adversary scores. ``index`` holds the batch's positions in the training split (NAT's
  targets follow images). Contrastive methods gather their embeddings over processes with
  gradient (dimctl/collectives.py ``gather_with_grad``), so negatives come from the global batch.
- ``loss(terms)``: the loss of the encoder and its companions (without the adversarial part), which
  ``forward`` returns.
- the networks its entry's ``companions`` publish beside encoder.safetensors (an autoencoder's
  ``decoder``, BiGAN's ``generator``).

An adversary, when the method has one, is a separate discriminator network trained against the
method in the same backward pass (train/pretrain.py ``step_losses``): by default prior matching of Y
(DIM's γ term, AAE), or BiGAN's joint discriminator of (image, code) pairs.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from dimctl.errors import UsageError
from dimctl.objectives import prior

WEIGHTS = ("alpha", "beta", "gamma")  # the objective weights a run records (DIM's α, β, γ)


@dataclass
class MethodOutput:
    """What a method's model returns for a batch, its loss included (as nanoGPT's model returns its loss)."""

    y: torch.Tensor
    terms: dict[str, torch.Tensor]  # every named term, logged
    loss: torch.Tensor  # the loss of the encoder and its companions (the adversarial part is the entry's)
    # What the method's own adversary scores (BiGAN: the (image, code) pairs of the data and of the
    # generator); None where the default adversary, prior matching, scores ``y``.
    adversary: object = None


@dataclass(frozen=True)
class PublishedRun:
    """What a companion's artifact records of the run that trained it."""

    encoder_path: Path  # the run's published encoder (a decoder names the encoder it decodes)
    dataset: dict
    step: int
    training: dict  # the run's settings


@dataclass(frozen=True)
class Companion:
    """A network a method trains beside the encoder, published as RUN/``file`` at the end of a run
    by ``save(bare model, path, run)``. A run of another method removes a stale one (--force)."""

    file: str
    save: Callable[[nn.Module, Path, PublishedRun], None]


class Method(ABC):
    """One `dimctl pretrain --method` (see the module docstring)."""

    name: ClassVar[str]  # the --method value
    label: ClassVar[str]  # the paper's name, for reports
    help: ClassVar[str]  # a phrase for `dimctl pretrain --help`
    image_size: ClassVar[int | None] = None  # the only input size it trains (its decoder's or generator's)
    weights: ClassVar[dict[str, float]] = {}  # the weights of WEIGHTS it uses → their defaults
    dim_options: ClassVar[bool] = False  # DIM's --occlude, --coord, --globals, --local-critic apply
    default_estimator: ClassVar[str] = "jsd"  # --estimator when none is given (the methods that use one)
    # Its own settings section (a dataclass of settings): options of `dimctl pretrain` and entries of
    # config.json like any other (train/config.py); a value off its default is refused under another --method.
    settings: ClassVar[type | None] = None
    companions: ClassVar[tuple[Companion, ...]] = ()  # networks published beside the encoder

    @abstractmethod
    def build(self, config, encoder: nn.Module, encoder_config, num_train: int) -> tuple[nn.Module, nn.Module | None]:
        """The model (holding ``encoder``) and its adversary or None, for a PretrainConfig."""

    def validate(self, config) -> None:
        """Raise UsageError for a setting this method cannot train with."""

    def resolve_weights(self, preset: str | None, given: dict[str, float | None]) -> dict[str, float]:
        """α, β, γ of a run: those it uses, as given or their defaults; 0 for the rest. A weight it
        does not use, or a preset, is refused rather than silently ignored; a weight it does not use
        given as 0 is what it is (a resumed run hands its recorded weights back)."""
        if preset is not None:
            raise UsageError(f"--preset is a DIM option; --method {self.name} does not use it")
        for key, value in given.items():
            if value and key not in self.weights:
                uses = ", ".join(f"--{k}" for k in self.weights) or "none"
                raise UsageError(f"--{key} does not apply to --method {self.name} (its weights: {uses})")
        return {k: given.get(k) if given.get(k) is not None else self.weights.get(k, 0.0) for k in WEIGHTS}

    def own_settings(self, config):
        """Its own settings section's values in a PretrainConfig (None for a method without one)."""
        if self.settings is None:
            return None
        values = config.objective.methods
        return self.settings(**{f.name: values.get(f.name, f.default) for f in fields(self.settings)})

    def resolve(self, preset: str | None, estimator: str | None, given: dict[str, float | None]) -> dict:
        """The objective settings a run records from what was given: its weights
        (``resolve_weights``), its preset (None: the comparison methods have none) and its estimator."""
        return {**self.resolve_weights(preset, given), "preset": None,
                "estimator": estimator or self.default_estimator}

    def run_name(self, settings: dict, dataset_label: str) -> str:
        """The run folder's name under runs/ when --out is not given (``settings``: the resolved flat config)."""
        return f"{self.name}-{dataset_label}"

    def adversary_losses(self, out: MethodOutput, model: nn.Module, discriminator: nn.Module,
                         bare_discriminator: nn.Module, config) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(the model's adversarial loss, the discriminator's loss, their named terms). Default:
        prior matching of Y (paper §3.3) with weight γ, to the prior the model names in ``.prior``
        (objectives/prior.py ``PRIORS``) — the model's term through the bare
        discriminator with its weights' gradients off, the discriminator's on Y detached, so one
        backward of the sum gives each network its own loss's gradient (objectives/prior.py)."""
        chosen = prior.PRIORS[model.prior]
        encoded = chosen.encode(out.y.float())
        bare_discriminator.requires_grad_(False)
        prior_term = prior.encoder_prior_loss(bare_discriminator, encoded)
        bare_discriminator.requires_grad_(True)
        disc_loss = prior.discriminator_loss(discriminator, encoded.detach(), config.objective.prior_gradient_penalty,
                                             chosen.sample, config.objective.prior_penalty_on)
        return (config.objective.gamma * prior_term, disc_loss,
                {"prior_encoder": prior_term, "prior_discriminator": disc_loss})

    def family(self, settings: dict) -> str | None:
        """The paper's name of a run's method (a report groups and compares runs by it), or None
        for a run the paper did not train (DIM with weights of no preset)."""
        return self.label

    def describe(self, settings: dict, weight: Callable[[float], str] = str) -> str:
        """How a report names a run of this method, with the setting that tells its runs apart
        (``weight`` formats a weight)."""
        return self.label

    def paper_name(self, settings: dict) -> str | None:
        """The name of the paper's Table 1 row a trained run of this method sits beside, or None."""
        return self.family(settings)

    def variants(self, settings: dict) -> list[str]:
        """The options a run turned on beyond the paper's plain objective (`+occlusion`, …); a run
        with any is not set beside the paper's numbers."""
        return []
