"""Settings of a pretraining run, declared once, in sections: data, encoder, objective, optimiser
and run. Each field carries its command-line help (dimctl/settings.py), so `dimctl pretrain`'s
options are derived from these classes (cli/settings_options.py) and their defaults live only here.
The CLI fills a config from flags (> env > config file > defaults) and writes its flat view, fully
resolved, to the run folder's config.json; ``PretrainConfig.from_dict`` reads that view back.
"""

from dataclasses import dataclass, field

from dimctl.data.registry import DATASETS
from dimctl.errors import UsageError
from dimctl.io.reading import require_file
from dimctl.methods import METHODS, companion_help
from dimctl.models.backbones import MIN_INPUT, STEMS, check_stage, is_backbone
from dimctl.models.encoders import ENCODERS, INPUT_SIZES
from dimctl.objectives.dim import DIM_ONLY_OPTIONS, PRESETS, DIMConfig
from dimctl.objectives.prior import PENALTY_ON
from dimctl.precision import PRECISIONS, resolve_precision
from dimctl.settings import SHARED_HELP, declared, declared_problem, flatten, registered_sections, setting, updated
from dimctl.train.guard import NAN_POLICIES
from dimctl.train.trackers import TRACKERS, check_tracker

PRESET_HELP = "Objective weights: " + ", ".join(f"{name} (α={w['alpha']:g}, β={w['beta']:g}, γ={w['gamma']:g})"
                                              for name, w in PRESETS.items()) + ". Default dim-l."
ARCH_HELP = ("Encoder: " + ", ".join(f"{name} ({size}×{size})" for name, size in INPUT_SIZES.items()
                                     if name in ENCODERS) + ". Smaller images are resized up to the encoder's size "
             "(digits to 64 for alexnet). Or torchvision:NAME, any torchvision convolutional classifier (resnet18, "
             "wide_resnet50_2, resnext50_32x4d, regnet_y_400mf, mobilenet_v3_small, efficientnet_b0, convnext_tiny "
             "and more) built untrained, at --image-size 32 or more (default 32): local = --local-layer, conv = its last "
             "stage, fc = pooling + --fc-dim, y = --y-dim. timm:NAME the same for a timm model (pip install "
             "'dimctl[timm]').")
METHOD_HELP = ("What trains the encoder: " + ", ".join(m.help for m in METHODS.values())
               + ". " + companion_help() + ".")
PRECISION_HELP = ("auto, fp32, bf16 or fp16 (autocast; fp16 adds loss scaling and needs a GPU). auto: bf16 on a CUDA "
                  "GPU with bf16, a CPU with AMX, or a CPU with AVX512-BF16 where a timed bf16 matmul beats fp32 by "
                  "1.3×; fp32 elsewhere; the choice is recorded in config.json and the encoder. The MI bounds are "
                  "computed in fp32 either way.")


@dataclass(frozen=True)
class DataSource:
    """Which dataset and where: the first settings of every training command (pretrain, generate train)."""

    PANEL = "Data"  # the --help heading of the settings declared here

    dataset: str = setting("digits", f"One of: {', '.join(DATASETS)}, or {SHARED_HELP['hf_dataset']}",
                           flags=("--dataset", "-d"))
    data_root: str | None = setting(None, SHARED_HELP["data_root"], resumable=True)
    download: bool = setting(False, SHARED_HELP["download"], flags=("--download",), resumable=True)


@dataclass(frozen=True)
class DataSettings(DataSource):
    image_size: int | None = setting(None, "Load images at this size (default: the --arch's input size). Only with "
                                           "--crop-size may it differ from that.", positive=True)
    crop_size: int = setting(0, "Random crop-size × crop-size windows of the loaded images feed the encoder (STL-10 "
                                "as in the paper: --image-size 96 --crop-size 64 --hflip). 0: off.")
    crop_padding: int = setting(0, "Random-crop augmentation padding in pixels (0: off, as in the paper for CIFAR).",
                                minimum=0)
    hflip: bool = setting(False, "Random horizontal flips.", flags=("--hflip/--no-hflip",))
    stream: bool = setting(False, "--dataset folder and hf:DIR only: decode images batch by batch in worker processes instead of "
                                  "loading the folder into memory (for folders larger than RAM).", flags=("--stream",))
    workers: int = setting(4, "Decoding worker processes with --stream.", resumable=True, minimum=0)


@dataclass(frozen=True)
class EncoderSettings:
    PANEL = "Encoder"  # the --help heading of the settings declared here

    arch: str = setting("dcgan", ARCH_HELP)
    width: float = setting(1.0, "Multiply the encoder's conv channels (1: the paper's; e.g. 0.25 for quick CPU runs).",
                           positive=True)
    fc_dim: int | None = setting(None, "Width of the encoder's fully connected layers (default: the paper's, 1024 or "
                                       "4096 for AlexNet).", positive=True)
    y_dim: int = setting(64, "Size of the representation Y.", positive=True)
    stem: str = setting("imagenet", "torchvision ResNets only: cifar swaps the ImageNet stem (7×7/2 conv, max-pool) "
                                    "for a 3×3/1 conv and no pool, as solo-learn does for 32-px images.",
                        choices=STEMS)
    local_layer: str | None = setting(None, "torchvision/timm backbones only: the stage read as the local map "
                                            "(e.g. layer2, features.3; a wrong name lists them). Default: the stage whose map is nearest 8×8 at "
                                            "the input size (ResNet-18: layer3 with --stem cifar at 32 px).")
    backbone_weights: str | None = setting(None, "torchvision and timm backbones: start from a local state dict of "
                                                 "the classifier (.safetensors, or .pth read as tensors only), e.g. "
                                                 "ImageNet weights; refused by name when its keys do not fit.")


def _method_sections() -> list[type]:
    """Each registered method's own settings section (its entry's ``settings``), when asked: a
    method registered before the command runs brings its options."""
    return [m.settings for m in METHODS.values() if m.settings is not None]


@dataclass(frozen=True)
class ObjectiveSettings(DIMConfig):
    """DIM's settings (objectives/dim.py), the method, and each method's own section (its entry's
    ``settings``: CPC's --cpc-rows). The CLI leaves the weights and the estimator unset, and the
    method's entry resolves them with --preset (methods/base.py ``resolve``)."""

    PANEL = "Objective"  # the --help heading of the settings declared here

    method: str = setting("dim", METHOD_HELP)  # dim, or a comparison method of the paper (dimctl/methods/)
    preset: str | None = setting("dim-l", PRESET_HELP, unset=True, choices=tuple(PRESETS))
    methods: dict = registered_sections(_method_sections)  # {setting: value} of the methods' own sections
    prior_gradient_penalty: float = setting(1.0, "Gradient-penalty weight of the prior discriminator.", cli=False)
    prior_penalty_on: str = setting("prior", "Where the prior discriminator's gradient penalty is taken: on prior "
                                             "samples (prior) or averaged over prior and encoded samples (both, as the "
                                             "authors' code intends).", choices=PENALTY_ON)


@dataclass(frozen=True)
class OptimiserSettings:
    PANEL = "Optimisation"  # the --help heading of the settings declared here

    batch_size: int = setting(64, "Images per step per process; negatives come from the batch.")
    lr: float = setting(1e-4, "Adam learning rate (encoder, heads and prior discriminator).", positive=True)
    adam_beta1: float = setting(0.5, "Adam's β1 (the authors' code: 0.5).", cli=False)
    adam_beta2: float = setting(0.999, "Adam's β2.", cli=False)


EVAL_LAYERS = ("y", "fc", "conv", "local")  # every encoder's taps (models/encoders.py)


@dataclass(frozen=True)
class Bookkeeping:
    """What every training command (pretrain, generate train, finetune) keeps of a run beside its
    weights, declared once: checkpoints, the NaN policy, experiment trackers, and the CPU switch.
    None changes what a run learns, so ``--resume`` may change each."""

    PANEL = "Checkpoints and logging"  # the --help heading of the settings declared here

    checkpoint_every: int = setting(500, "Save resume state every N steps (0: only at the end).", resumable=True,
                                    minimum=0)
    keep_checkpoints: int = setting(3, "Keep the newest K checkpoints.", resumable=True, minimum=0)
    nan_policy: str = setting("stop", "A NaN/inf loss or gradient: `stop` (before the bad update; the last checkpoint "
                                      "stays good) or `skip` the step.", resumable=True, choices=NAN_POLICIES)
    log_with: str = setting("none", "Also log every metrics.jsonl value and the learning rate to an experiment "
                                    "tracker: csv (RUN/metrics.csv), tensorboard (RUN/<run>/, pip install "
                                    "'dimctl[tensorboard]'), wandb or mlflow (their own packages); none.",
                            resumable=True, choices=TRACKERS)
    cpu: bool = setting(False, "Train on the CPU even when a GPU is present.", flags=("--cpu",), resumable=True,
                        panel="Devices")

    def check_declared(self) -> None:
        """Every declared range and choice of this config (a subclass's: all of its settings), and
        that an optional tracker's package is there, before anything is written."""
        problem = declared_problem(self)
        if problem:
            raise UsageError(problem)
        check_tracker(self.log_with)


@dataclass(frozen=True)
class _PretrainRun:
    """The run settings of pretraining's own; ``RunSettings`` adds the shared ``Bookkeeping``
    after them (a dataclass lists a base's fields first: this order keeps --epochs at the top of
    its --help panel, the bookkeeping below)."""

    PANEL = "Run"  # the --help heading of the settings declared here

    epochs: int = setting(10, "Passes over the training split (0 publishes the initial, random encoder).",
                          resumable=True, minimum=0)
    max_steps: int = setting(0, "Stop after this many steps, even inside an epoch (0: every step of --epochs). "
                                "For budgets in steps or wall time: a run equal in time to another's.", resumable=True,
                             minimum=0)
    seed: int = setting(0, "Seed for initialisation, data order and augmentation.")
    log_every: int = setting(10, SHARED_HELP["log_every"], resumable=True, minimum=0)
    eval_every: int = setting(0, "Every N steps and at the end, score the frozen encoder by weighted kNN (cosine, "
                                 "k=200, T=0.07, the online accuracy of SSL papers): the first --eval-images "
                                 "training images are the bank, the test split's the queries; logged as knn_LAYER "
                                 "in metrics.jsonl (0: off).", resumable=True, panel="Online evaluation", minimum=0)
    eval_layers: str = setting("y", "Layers the online kNN scores, comma-separated (y, fc, conv).", resumable=True,
                               panel="Online evaluation")
    eval_images: int = setting(10_000, "At most this many images of each split for the online kNN.", resumable=True,
                               panel="Online evaluation", positive=True)
    # auto is resolved before the run starts (dimctl/precision.py)
    precision: str = setting("auto", PRECISION_HELP, choices=PRECISIONS, panel="Devices")
    channels_last: bool = setting(False, "Channels-last memory format for the convolutions (faster on most CPUs and "
                                         "tensor-core GPUs).", flags=("--channels-last",), resumable=True,
                                  panel="Devices")
    compile: bool = setting(False, "torch.compile the encoder and heads (inductor). Pays off on GPUs over long runs; "
                                   "compiling takes a minute.", flags=("--compile",), resumable=True,
                            panel="Devices")
    deterministic: bool = setting(False, "Deterministic GPU kernels (cuDNN, cuBLAS): two runs with one seed, or a run "
                                         "killed and resumed, end bit-identical on a GPU, at some cost in speed "
                                         "(results/gpu_resume.csv). On the CPU every run already is.",
                                  flags=("--deterministic",), resumable=True, panel="Devices")
    sync_bn: bool = setting(False, "With several GPU processes: BatchNorm statistics over the global batch "
                                   "(SyncBatchNorm).", flags=("--sync-bn",), panel="Devices")


@dataclass(frozen=True)
class RunSettings(Bookkeeping, _PretrainRun):
    """How long pretraining runs, on what, and what it keeps beside its weights."""


@dataclass(frozen=True)
class PretrainConfig:
    data: DataSettings = field(default_factory=DataSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    optimiser: OptimiserSettings = field(default_factory=OptimiserSettings)
    run: RunSettings = field(default_factory=RunSettings)

    @classmethod
    def of(cls, **settings) -> "PretrainConfig":
        """A config from flat setting names: ``PretrainConfig.of(mi_units=256, epochs=1)``."""
        try:
            return updated(cls(), **settings)
        except KeyError as e:
            raise UsageError(f"{e.args[0]}") from None

    @classmethod
    def from_dict(cls, flat: dict) -> "PretrainConfig":
        """The config whose ``to_dict()`` is ``flat`` (config.json's "config"; a setting an older run
        does not record takes its default)."""
        return cls.of(**flat)

    def to_dict(self) -> dict:
        return flatten(self)

    def replace(self, **settings) -> "PretrainConfig":
        return updated(self, **settings)

    def planned_device_type(self) -> str:
        """The kind of device Accelerate will train on (it takes a GPU whenever one is there)."""
        import torch

        return "cuda" if not self.run.cpu and torch.cuda.is_available() else "cpu"

    def resolved(self, device_type: str | None = None) -> "PretrainConfig":
        """This config with ``--precision auto`` replaced by what runs on the device (recorded so)."""
        if self.run.precision != "auto":
            return self
        return self.replace(precision=resolve_precision("auto", device_type or self.planned_device_type()))

    def input_size(self) -> int:
        """The side of the images the encoder takes: the crop, or the architecture's input size."""
        if is_backbone(self.encoder.arch):  # any size from 32 up
            return self.data.crop_size or self.data.image_size or MIN_INPUT
        return self.data.crop_size or INPUT_SIZES[self.encoder.arch]

    def load_size(self) -> int:
        """The side the dataset's images are loaded at (then cropped to ``crop_size``, if set)."""
        if is_backbone(self.encoder.arch):
            return self.data.image_size or MIN_INPUT
        return self.data.image_size or INPUT_SIZES[self.encoder.arch]

    def validate(self) -> "PretrainConfig":
        data, objective, run = self.data, self.objective, self.run
        if objective.method not in METHODS:
            raise UsageError(f"--method {objective.method!r} is not one of: {', '.join(METHODS)}")
        problem = declared_problem(self)  # every declared choice and range: estimator, critic, weights, sizes, …
        if problem:
            raise UsageError(problem)
        if self.optimiser.batch_size < 2:
            raise UsageError("--batch-size must be at least 2: negatives come from the other images in the batch")
        check_tracker(run.log_with)  # an optional tracker's package is there, before anything is written
        if run.eval_every and data.stream:
            raise UsageError("--eval-every needs the images in memory; it does not work with --stream")
        wrong_layers = [name for name in run.eval_layers.split(",") if name not in EVAL_LAYERS]
        if run.eval_every and wrong_layers:
            raise UsageError(f"--eval-layers {wrong_layers[0]!r} is not one of: {', '.join(EVAL_LAYERS)}")
        if data.stream and data.dataset != "folder" and not data.dataset.startswith("hf:"):
            raise UsageError(f"--stream reads image folders (--dataset folder) and hf:DIR; {data.dataset} loads into memory")
        self._validate_encoder()
        self._validate_method()
        return self

    def _validate_method(self) -> None:
        """What every method's entry declares (input size, DIM's options), then its own checks."""
        name = self.objective.method
        method = METHODS[name]
        if not method.dim_options:
            for option, plain in DIM_ONLY_OPTIONS.items():
                if getattr(self.objective, option) != plain:
                    raise UsageError(f"--{option.replace('_', '-')} is a DIM option; --method {name} does not use it")
        flat = self.to_dict()
        for other in METHODS.values():  # another method's own settings, off their defaults
            for f in declared(other.settings) if other.settings is not None and other is not method else ():
                if flat[f.name] != f.default:
                    raise UsageError(f"--{f.name.replace('_', '-')} is a --method {other.name} setting; "
                                     f"--method {name} does not use it")
        if method.image_size is not None and self.input_size() != method.image_size:
            size = method.image_size
            raise UsageError(f"--method {name} trains the paper's {size}×{size} DCGAN decoder/generator; "
                             f"--arch {self.encoder.arch} takes {self.input_size()}×{self.input_size()} images "
                             f"(use dcgan or resnet)")
        method.validate(self)

    def _validate_encoder(self) -> None:
        arch, width, fc_dim = self.encoder.arch, self.encoder.width, self.encoder.fc_dim
        crop_size, image_size = self.data.crop_size, self.data.image_size
        if is_backbone(arch):
            self._validate_backbone()
            return
        for option in ("local_layer", "backbone_weights"):
            if getattr(self.encoder, option) is not None:
                raise UsageError(f"--{option.replace('_', '-')} is for torchvision and timm backbones "
                                 f"(--arch torchvision:NAME, timm:NAME)")
        if self.encoder.stem != "imagenet":
            raise UsageError("--stem is for torchvision ResNets (--arch torchvision:resnet18, …)")
        if arch not in ENCODERS:
            raise UsageError(f"--arch {arch!r} is not one of: {', '.join(ENCODERS)}")
        if width <= 0 or (fc_dim is not None and fc_dim < 1) or crop_size < 0:
            raise UsageError("--width and --fc-dim must be positive, --crop-size ≥ 0")
        size = INPUT_SIZES[arch]
        if crop_size and crop_size != size:
            raise UsageError(f"--crop-size {crop_size}: the {arch} encoder takes {size}×{size} images, "
                             f"so crops must be {size}")
        if crop_size and (image_size or 0) <= crop_size:
            raise UsageError(f"--crop-size {crop_size} needs --image-size larger than the crop "
                             f"(the size images load at; STL-10's own is 96)")
        if not crop_size and image_size is not None and image_size != size:
            raise UsageError(f"--arch {arch} takes {size}×{size} images, not --image-size {image_size} "
                             f"(or add --crop-size {size} for random {size}-px crops of larger images)")


    def _validate_backbone(self) -> None:
        """A torchvision backbone: it exists, cuts at --local-layer, and what it cannot do is refused now."""
        arch, objective = self.encoder.arch, self.objective
        size = self.input_size()
        if size < MIN_INPUT:
            raise UsageError(f"--arch {arch} takes images of {MIN_INPUT} px or more, not {size}")
        if self.encoder.width != 1:
            raise UsageError(f"--width scales the paper's encoders; {arch} keeps torchvision's widths (drop --width)")
        if self.data.crop_size and (self.data.image_size or 0) <= self.data.crop_size:
            raise UsageError(f"--crop-size {self.data.crop_size} needs --image-size larger than the crop")
        if objective.occlude:
            raise UsageError(f"--occlude sizes its blocks by the paper encoders' receptive fields; not with {arch}")
        if self.encoder.backbone_weights is not None:  # a FIFO or device is refused, never read
            require_file(self.encoder.backbone_weights, f"--backbone-weights {self.encoder.backbone_weights}")
        try:  # builds the untrained model once: its name, family, stem and stages are checked together
            check_stage(arch, self.encoder.stem, self.encoder.local_layer, size)
        except ValueError as e:
            raise UsageError(f"--arch {arch}: {e}") from None


RESUMABLE = frozenset(f.name for f in declared(PretrainConfig) if f.metadata["resumable"])  # --resume may change these
