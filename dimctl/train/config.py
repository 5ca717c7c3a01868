"""Settings of a pretraining run. The CLI fills this from flags (> env > config file > defaults)
and writes it, fully resolved, to the run folder's config.json."""

from dataclasses import asdict, dataclass

from dimctl.errors import UsageError
from dimctl.objectives.bounds import ESTIMATORS
from dimctl.objectives.dim import PRESETS, DIMConfig


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class PretrainConfig:
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    preset: str | None = "dim-l"
    alpha: float = 0.0
    beta: float = 1.0
    gamma: float = 0.1
    estimator: str = "jsd"
    mi_units: int = 2048
    y_dim: int = 64
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    adam_beta1: float = 0.5  # the authors' code uses betas (0.5, 0.999)
    adam_beta2: float = 0.999
    prior_gradient_penalty: float = 1.0
    seed: int = 0
    crop_padding: int = 0  # paper: no augmentation on CIFAR
    hflip: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    nan_policy: str = "stop"  # stop | skip: what a NaN/inf loss does
    cpu: bool = False
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast through Accelerate)
    channels_last: bool = False
    compile: bool = False  # torch.compile through Accelerate (inductor)
    sync_bn: bool = False  # BatchNorm statistics over the global batch (GPUs only)

    def dim(self) -> DIMConfig:
        return DIMConfig(alpha=self.alpha, beta=self.beta, gamma=self.gamma,
                         estimator=self.estimator, mi_units=self.mi_units)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "PretrainConfig":
        if self.estimator not in ESTIMATORS:
            raise UsageError(f"--estimator {self.estimator!r} is not one of: {', '.join(ESTIMATORS)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise UsageError(f"--preset {self.preset!r} is not one of: {', '.join(PRESETS)}")
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise UsageError("--alpha, --beta and --gamma must be ≥ 0")
        if self.alpha == 0 and self.beta == 0:
            raise UsageError("--alpha and --beta are both 0: there is no MI term to train (try --preset dim-l)")
        for name in ("epochs", "checkpoint_every", "log_every", "keep_checkpoints", "crop_padding"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be ≥ 0")
        if self.nan_policy not in ("stop", "skip"):
            raise UsageError(f"--nan-policy {self.nan_policy!r} is not one of: stop, skip")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2: negatives come from the other images in the batch")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        if self.lr <= 0 or self.mi_units < 1 or self.y_dim < 1:
            raise UsageError("--lr, --mi-units and --y-dim must be positive")
        return self


def resolve_preset(preset: str | None, alpha: float | None, beta: float | None, gamma: float | None) -> dict:
    """A preset's weights, each overridden by an explicitly given --alpha/--beta/--gamma."""
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"--preset {preset!r} is not one of: {', '.join(PRESETS)}")
    weights = dict(PRESETS[preset or "dim-l"])
    for key, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if value is not None:
            weights[key] = value
    return weights
