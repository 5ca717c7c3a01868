"""Settings of a pretraining run. The CLI fills this from flags (> env > config file > defaults)
and writes it, fully resolved, to the run folder's config.json."""

from dataclasses import asdict, dataclass, replace

from dimctl.errors import UsageError
from dimctl.methods import METHODS
from dimctl.models.encoders import ENCODERS, INPUT_SIZES
from dimctl.objectives.bounds import ESTIMATORS
from dimctl.objectives.dim import COORDS, LOCAL_CRITICS, PRESETS, DIMConfig
from dimctl.precision import PRECISIONS, resolve_precision
from dimctl.train.guard import NAN_POLICIES


@dataclass(frozen=True)
class PretrainConfig:
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    method: str = "dim"  # dim, or a comparison method of the paper (dimctl/methods/)
    preset: str | None = "dim-l"
    alpha: float = 0.0
    beta: float = 1.0
    gamma: float = 0.1
    estimator: str = "jsd"
    mi_units: int = 2048
    local_critic: str = "dot"  # dot | concat (paper Eq. 11-12)
    occlude: bool = False  # global feature from an occluded copy (paper §4.3)
    coord: str = "none"  # coordinate prediction: none | abs | rel | both
    coord_abs_weight: float = 1.0
    coord_rel_weight: float = 1.0
    globals: int = 0  # extra less-global features from random blocks of local features (Table 3)
    cpc_rows: int = 3  # CPC: rows ahead predicted, one network per offset (Oord et al. used 5)
    y_dim: int = 64
    arch: str = "dcgan"  # encoder architecture (models/encoders.py ENCODERS)
    width: float = 1.0  # multiplier of the encoder's conv channels (1.0: the paper's)
    fc_dim: int | None = None  # the encoder's fully connected width (None: the architecture's, 1024 or 4096)
    image_size: int | None = None  # size the images load at (None: the encoder's input size)
    crop_size: int = 0  # random crop_size × crop_size windows of each batch feed the encoder (0: off)
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
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast through Accelerate); auto: dimctl/precision.py
    channels_last: bool = False
    compile: bool = False  # torch.compile of encoder+heads (inductor)
    sync_bn: bool = False  # BatchNorm statistics over the global batch (GPUs only)
    stream: bool = False  # decode an image folder batch by batch instead of loading it into memory
    workers: int = 4  # DataLoader worker processes when streaming

    def dim(self) -> DIMConfig:
        return DIMConfig(alpha=self.alpha, beta=self.beta, gamma=self.gamma, estimator=self.estimator,
                         mi_units=self.mi_units, local_critic=self.local_critic, occlude=self.occlude,
                         coord=self.coord, coord_abs_weight=self.coord_abs_weight,
                         coord_rel_weight=self.coord_rel_weight, globals=self.globals)

    def to_dict(self) -> dict:
        return asdict(self)

    def planned_device_type(self) -> str:
        """The kind of device Accelerate will train on (it takes a GPU whenever one is there)."""
        import torch

        return "cuda" if not self.cpu and torch.cuda.is_available() else "cpu"

    def resolved(self, device_type: str | None = None) -> "PretrainConfig":
        """This config with ``--precision auto`` replaced by what runs on the device (recorded so)."""
        if self.precision != "auto":
            return self
        return replace(self, precision=resolve_precision("auto", device_type or self.planned_device_type()))

    def input_size(self) -> int:
        """The side of the images the encoder takes: the crop, or the architecture's input size."""
        return self.crop_size or INPUT_SIZES[self.arch]

    def load_size(self) -> int:
        """The side the dataset's images are loaded at (then cropped to ``crop_size``, if set)."""
        return self.image_size or INPUT_SIZES[self.arch]

    def validate(self) -> "PretrainConfig":
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r} is not one of: {', '.join(METHODS)}")
        if self.estimator not in ESTIMATORS:
            raise UsageError(f"--estimator {self.estimator!r} is not one of: {', '.join(ESTIMATORS)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise UsageError(f"--preset {self.preset!r} is not one of: {', '.join(PRESETS)}")
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise UsageError("--alpha, --beta and --gamma must be ≥ 0")
        for name in ("epochs", "checkpoint_every", "log_every", "keep_checkpoints", "crop_padding", "workers"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be ≥ 0")
        if self.nan_policy not in NAN_POLICIES:
            raise UsageError(f"--nan-policy {self.nan_policy!r} is not one of: {', '.join(NAN_POLICIES)}")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2: negatives come from the other images in the batch")
        if self.stream and self.dataset != "folder":
            raise UsageError(f"--stream reads image folders (--dataset folder); {self.dataset} loads into memory")
        if self.local_critic not in LOCAL_CRITICS:
            raise UsageError(f"--local-critic {self.local_critic!r} is not one of: {', '.join(LOCAL_CRITICS)}")
        if self.coord not in COORDS:
            raise UsageError(f"--coord {self.coord!r} is not one of: {', '.join(COORDS)}")
        if min(self.coord_abs_weight, self.coord_rel_weight) < 0 or self.globals < 0:
            raise UsageError("--coord-abs-weight, --coord-rel-weight and --globals must be ≥ 0")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        self._validate_encoder()
        if self.lr <= 0 or self.mi_units < 1 or self.y_dim < 1:
            raise UsageError("--lr, --mi-units and --y-dim must be positive")
        self._validate_method()
        return self

    def _validate_method(self) -> None:
        """What every method's entry declares (input size, DIM's options), then its own checks."""
        method = METHODS[self.method]
        if not method.dim_options:
            dim_only = {"occlude": False, "coord": "none", "globals": 0, "local_critic": "dot"}
            for name, plain in dim_only.items():
                if getattr(self, name) != plain:
                    raise UsageError(f"--{name.replace('_', '-')} is a DIM option; --method {self.method} does not use it")
        if method.image_size is not None and self.input_size() != method.image_size:
            size = method.image_size
            raise UsageError(f"--method {self.method} trains the paper's {size}×{size} DCGAN decoder/generator; "
                             f"--arch {self.arch} takes {self.input_size()}×{self.input_size()} images (use dcgan or resnet)")
        method.validate(self)

    def _validate_encoder(self) -> None:
        if self.arch not in ENCODERS:
            raise UsageError(f"--arch {self.arch!r} is not one of: {', '.join(ENCODERS)}")
        if self.width <= 0 or (self.fc_dim is not None and self.fc_dim < 1) or self.crop_size < 0:
            raise UsageError("--width and --fc-dim must be positive, --crop-size ≥ 0")
        size = INPUT_SIZES[self.arch]
        if self.crop_size and self.crop_size != size:
            raise UsageError(f"--crop-size {self.crop_size}: the {self.arch} encoder takes {size}×{size} images, "
                             f"so crops must be {size}")
        if self.crop_size and (self.image_size or 0) <= self.crop_size:
            raise UsageError(f"--crop-size {self.crop_size} needs --image-size larger than the crop "
                             f"(the size images load at; STL-10's own is 96)")
        if not self.crop_size and self.image_size is not None and self.image_size != size:
            raise UsageError(f"--arch {self.arch} takes {size}×{size} images, not --image-size {self.image_size} "
                             f"(or add --crop-size {size} for random {size}-px crops of larger images)")


def resolve_weights(method: str, preset: str | None, alpha: float | None, beta: float | None,
                    gamma: float | None) -> dict:
    """α, β, γ of a run, as the method's entry resolves them (methods/base.py ``resolve_weights``):
    DIM's preset (default dim-l) with each given weight overriding it; the other methods use only
    their own weights (beta-vae's KL weight --beta, aae's prior weight --gamma) and refuse the rest."""
    if method not in METHODS:
        raise UsageError(f"--method {method!r} is not one of: {', '.join(METHODS)}")
    return METHODS[method].resolve_weights(preset, {"alpha": alpha, "beta": beta, "gamma": gamma})
