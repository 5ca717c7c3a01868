"""Any torchvision convolutional classifier as a DIM encoder: ``--arch torchvision:NAME``.

DIM's only contract with an encoder is a local feature map and a global summary of it
(``encode_local`` / ``summarise``, models/encoders.py). A torchvision classifier is cut into its
stages (ResNet: the stem's modules, then ``layer1`` … ``layer4``; MobileNetV3, EfficientNet,
ConvNeXt: ``features.0`` … ``features.N``; RegNet: ``stem``, then ``trunk_output.block1`` …), named
as torchvision names the modules (the names ``get_graph_node_names`` lists for them):

- local = the output of the stage ``local_layer`` (default: the stage whose map is nearest 8×8 at
  the input size, the later one on a tie);
- conv = the output of the last stage, computed from the local map by the stages after it;
- fc = global average pooling, then a linear layer to ``fc_dim``, BN and ReLU;
- y = a linear layer to ``y_dim``.

The classifier is built with ``torchvision.models.get_model(NAME, weights=None)``: nothing
downloads. Its first convolution takes ``in_channels`` (grey images too), and ``stem="cifar"``
swaps a ResNet's ImageNet stem (7×7 stride-2 conv, max-pool) for a 3×3 stride-1 conv and no pool,
as solo-learn does for 32-px images (the ImageNet stem leaves a 32-px image a 1×1 map at the end).
The stages are sliced from the model's own modules, so parameter names stay torchvision's under
``trunk.`` and a local state dict can be loaded into them (``load_backbone_weights``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from dimctl.models.encoders import Encoder

PREFIX, TIMM = "torchvision:", "timm:"
STEMS = ("imagenet", "cifar")
MIN_INPUT = 32  # the smallest side every family keeps a map at, through its last stage


def is_backbone(arch: str) -> bool:
    return arch.startswith((PREFIX, TIMM))


def model_name(arch: str) -> str:
    return arch.split(":", 1)[1]


def library(arch: str):
    """The module that builds ``arch``'s backbone: torchvision, or timm (an optional extra)."""
    if arch.startswith(TIMM):
        try:
            import timm
        except ImportError:
            raise ValueError("timm backbones need the timm extra: pip install 'dimctl[timm]'") from None
        return timm
    import torchvision

    return torchvision


def build_trunk(arch: str, in_channels: int, stem: str) -> nn.Module:
    """The backbone of ``arch`` (torchvision:NAME or timm:NAME), untrained, ready for ``stages``."""
    if not arch.startswith(TIMM):
        return build_classifier(model_name(arch), in_channels, stem)
    timm, name = library(arch), model_name(arch)
    if stem != "imagenet":
        raise ValueError("--stem cifar is for torchvision ResNets; a timm model keeps its own stem")
    if name not in timm.list_models():
        raise ValueError(f"timm has no model {name!r} (timm.list_models())")
    try:  # features_only: the trunk and where its stages end (feature_info), no classifier
        return timm.create_model(name, pretrained=False, features_only=True, in_chans=in_channels)
    except (RuntimeError, AssertionError, TypeError, ValueError) as e:
        raise ValueError(f"timm cannot build {name} with features_only ({e}): not a convolutional backbone") from None


def known_models() -> list[str]:
    """torchvision's classification models (its registry; the convolutional ones work here)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


# The convolutional families whose trunks ``stages`` cuts (transformers keep channels last: not here).
FAMILIES = ("resnet", "wide_resnet", "resnext", "regnet", "mobilenet_v2", "mobilenet_v3", "efficientnet", "convnext",
            "mnasnet")


def build_classifier(name: str, in_channels: int, stem: str) -> nn.Module:
    """The torchvision classifier ``name``, untrained, taking ``in_channels`` and with ``stem``."""
    import torchvision

    if name in known_models() and not name.startswith(FAMILIES):
        raise ValueError(f"{name} is not a convolutional backbone dimctl cuts into stages; the families: "
                         f"{', '.join(FAMILIES)}")
    if name not in known_models():
        raise ValueError(f"torchvision has no classification model {name!r}; e.g. resnet18, resnet50, "
                         f"wide_resnet50_2, resnext50_32x4d, regnet_y_400mf, mobilenet_v3_small, efficientnet_b0, "
                         f"convnext_tiny (torchvision.models.list_models())")
    model = torchvision.models.get_model(name, weights=None)
    if stem == "cifar":
        if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
            raise ValueError(f"--stem cifar replaces a ResNet's stem (conv1 and maxpool); {name} has none")
        model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif stem != "imagenet":
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, not {stem!r}")
    _set_input_channels(model, in_channels)
    return model


def _set_input_channels(model: nn.Module, in_channels: int) -> None:
    """The first convolution takes ``in_channels`` (a fresh one of the same shape otherwise)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels != in_channels:
                parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
                setattr(parent, name.rpartition(".")[2], nn.Conv2d(
                    in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                    module.dilation, module.groups, module.bias is not None, module.padding_mode))
            return
    raise ValueError("the model has no convolution: not a convolutional backbone")


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's trunk as named stages in order, up to (not including) its pooling and classifier."""
    if hasattr(model, "feature_info"):  # timm's features_only trunk
        return _timm_stages(model)
    if hasattr(model, "layer4") and hasattr(model, "conv1"):  # resnet, wide_resnet, resnext
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        return [(n, getattr(model, n)) for n in names]
    if hasattr(model, "trunk_output") and hasattr(model, "stem"):  # regnet
        return [("stem", model.stem), *((f"trunk_output.{n}", m) for n, m in model.trunk_output.named_children())]
    if isinstance(getattr(model, "features", None), nn.Sequential):  # mobilenet, efficientnet, convnext, …
        return [(f"features.{n}", m) for n, m in model.features.named_children()]
    raise ValueError(f"{type(model).__name__} has no trunk dimctl knows how to cut into stages "
                     f"(resnet, wide_resnet, resnext, regnet, mobilenet, efficientnet, convnext families)")


def _timm_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm's trunk modules in order, with a Sequential opened up wherever a stage ends inside it
    (EfficientNet's ``blocks`` holds stages blocks.0 … blocks.6): each stage end is a stage name."""
    found = list(model.named_children())
    for end in model.feature_info.module_name():
        # timm names a flattened stage "stages_0" where feature_info says "stages.0"
        while end not in [name for name, _ in found] and end.replace(".", "_") not in [name for name, _ in found]:
            at = next((i for i, (name, _) in enumerate(found) if end.startswith(name + ".")), None)
            if at is None or not isinstance(found[at][1], nn.Sequential):
                raise ValueError(f"cannot cut the timm trunk at {end!r}: not a sequence of stages")
            name, module = found[at]
            found[at:at + 1] = [(f"{name}.{child}", m) for child, m in module.named_children()]
    return found


def stage_shapes(model: nn.Module, in_channels: int, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(stage name, per-image output shape) of every stage, for a blank image of that size."""
    x = torch.zeros(2, in_channels, image_size, image_size)
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, stage in stages(model):
            x = stage(x)
            out.append((name, tuple(x.shape[1:])))
    model.train(was_training)
    return out


def default_local_layer(shapes: list[tuple[str, tuple[int, ...]]]) -> str:
    """The stage whose map is nearest 8×8 (the later one on a tie: more channels, same resolution)."""
    best = min(range(len(shapes)), key=lambda i: (abs(shapes[i][1][-1] - 8), -i))
    return shapes[best][0]


def check_stage(arch: str, stem: str, local_layer: str | None, image_size: int) -> None:
    """ValueError unless ``local_layer`` (when given) is a stage of ``arch`` that leaves a map."""
    model = build_trunk(arch, 3, stem)
    shapes = dict(stage_shapes(model, 3, image_size))
    if local_layer is not None and local_layer not in shapes:
        raise ValueError(f"--local-layer {local_layer!r} is not one of its stages: {', '.join(shapes)}")


def resolve_config(config) -> None:
    """Fill a backbone EncoderConfig's defaults in place (it is frozen: set as __post_init__ would):
    the ImageNet stem, the local stage by the 8×8 rule, torchvision's version."""
    if config.stem is None:
        object.__setattr__(config, "stem", "imagenet")
    if config.local_layer is None:
        model = build_trunk(config.arch, config.in_channels, config.stem)
        object.__setattr__(config, "local_layer", default_local_layer(
            stage_shapes(model, config.in_channels, max(config.image_size, MIN_INPUT))))
    if config.library_version is None:
        object.__setattr__(config, "library_version", library(config.arch).__version__)


class BackboneEncoder(Encoder):
    """The Encoder contract (models/encoders.py) over a torchvision or timm model's stages.

    Built from an EncoderConfig whose ``arch`` is ``torchvision:NAME`` or ``timm:NAME`` (with
    ``stem`` and ``local_layer`` recorded in it), so an artifact's header rebuilds it offline."""

    input_size = None  # any side from MIN_INPUT up

    def __init__(self, config):
        if config.image_size < MIN_INPUT:
            raise ValueError(f"{config.arch} takes images of {MIN_INPUT} px or more, not {config.image_size}")
        super().__init__(config)
        model = build_trunk(config.arch, config.in_channels, config.stem or "imagenet")
        cut = stages(model)
        names = [name for name, _ in cut]
        shapes = dict(stage_shapes(model, config.in_channels, config.image_size))
        if config.local_layer not in names:
            raise ValueError(f"--local-layer {config.local_layer!r} is not a stage of {config.arch}; its stages: "
                             f"{', '.join(names)}")
        split = names.index(config.local_layer) + 1
        self.trunk = nn.ModuleDict()  # torchvision's module names (dots as "/", which ModuleDict refuses)
        for name, stage in cut:
            self.trunk[name.replace(".", "/")] = stage
        self._lower, self._upper = names[:split], names[split:]
        channels = shapes[names[-1]][0]
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, config.fc_dim, bias=False),
                                nn.BatchNorm1d(config.fc_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(config.fc_dim, config.y_dim)

    def _run(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = self.trunk[name.replace(".", "/")](x)
        return x

    def encode_local(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self._lower, x)

    def conv_from_local(self, local: torch.Tensor) -> torch.Tensor:
        return self._run(self._upper, local)

    def fc_input(self, conv: torch.Tensor) -> torch.Tensor:
        return conv  # self.fc pools first: the last map's size follows the input size


def load_backbone_weights(encoder: BackboneEncoder, path) -> None:
    """A local state dict of the classifier (.safetensors, or .pth read as tensors only) into the
    trunk; its classifier head is ignored. Refused by name when keys of the trunk are missing, extra
    or misshapen. torchvision's keys are the trunk's own; a timm file is checked against timm's full
    model and then loaded by timm itself (which adapts a 3-channel first conv to grey inputs)."""
    from pathlib import Path

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never runs pickled code
    if encoder.config.arch.startswith(TIMM):
        _load_timm_weights(encoder, path, state)
        return
    own = {f"{stage.replace('/', '.')}.{key}": value
           for stage, module in encoder.trunk.items() for key, value in module.state_dict().items()}
    prefixes = tuple(stage.replace("/", ".") + "." for stage in encoder.trunk)
    extra = [k for k in state if k.startswith(prefixes) and k not in own]  # a deeper model of the family
    _refuse_unless_matching(encoder, path, own, state, extra)
    for stage, module in encoder.trunk.items():
        prefix = stage.replace("/", ".") + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _refuse_unless_matching(encoder, path, own: dict, state: dict, extra: list[str], first_conv: str = "") -> None:
    """ValueError naming the first trunk tensor of ``own`` that ``state`` lacks or shapes otherwise
    (``first_conv`` may differ in its input channels only), or the first of ``extra``."""
    def fits(key: str) -> bool:
        mine, theirs = tuple(own[key].shape), tuple(state[key].shape)
        return mine == theirs or (key == first_conv and mine[:1] + mine[2:] == theirs[:1] + theirs[2:])

    missing = [k for k in own if k not in state]
    misshapen = [k for k in own if k in state and not fits(k)]
    if missing or misshapen or extra:
        bad = (missing or misshapen or extra)[0]
        what = "has no" if missing else "has another shape for" if misshapen else "has a tensor this trunk lacks,"
        raise ValueError(f"{path} {what} {bad!r} ({len(missing)} missing, {len(misshapen)} misshapen, {len(extra)} "
                         f"extra of {len(own)} trunk tensors); it is not a state dict of this {encoder.config.arch} "
                         f"with --stem {encoder.config.stem} and {encoder.config.in_channels} input channels")


def _load_timm_weights(encoder: BackboneEncoder, path, state: dict) -> None:
    """timm's features_only trunk renames what it flattens (``stages.0`` → ``stages_0``) and drops
    the head, so the file is checked against the full model's keys, and timm's own loader
    (``pretrained_cfg_overlay=dict(file=…)``, local, tensors only) maps it onto the trunk."""
    timm, name, channels = library(encoder.config.arch), model_name(encoder.config.arch), encoder.config.in_channels
    full = timm.create_model(name, pretrained=False, in_chans=channels)
    cfg = full.pretrained_cfg
    heads = cfg.get("classifier") or ()
    heads = tuple(f"{h}." for h in ((heads,) if isinstance(heads, str) else heads))
    own = {k: v for k, v in full.state_dict().items() if not k.startswith(heads)}
    first_conv = f"{cfg.get('first_conv')}.weight"
    _refuse_unless_matching(encoder, path, own, state, [k for k in state if k not in full.state_dict()], first_conv)
    # The file's own input channels, so that timm adapts a first conv only when they differ.
    file_channels = state[first_conv].shape[1] if first_conv in state else 3
    overlay = {"file": str(path), "input_size": (file_channels, *cfg.get("input_size", (3, 224, 224))[1:])}
    quiet = logging.getLogger("timm")  # its notes on the head it leaves out are not the user's business
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        trunk = timm.create_model(name, pretrained=True, features_only=True, in_chans=channels,
                                  pretrained_cfg_overlay=overlay)
    except (RuntimeError, NotImplementedError) as e:
        raise ValueError(f"{path}: timm could not load it into {encoder.config.arch} with {channels} input "
                         f"channels ({str(e).splitlines()[0]})") from None
    finally:
        quiet.setLevel(level)
    for stage, module in stages(trunk):
        encoder.trunk[stage.replace(".", "/")].load_state_dict(module.state_dict())
