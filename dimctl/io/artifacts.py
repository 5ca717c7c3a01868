"""Published network weights: safetensors files that describe themselves.

Header metadata (all string values): ``dimctl.kind``, ``dimctl.schema``, ``dimctl.config`` (JSON
from which the network is rebuilt), ``dimctl.dataset`` (JSON), ``dimctl.version``, ``dimctl.step``,
and optionally ``dimctl.training`` (JSON run settings, for provenance). A decoder also carries
``dimctl.encoder`` (JSON: the sha256, path and layer of the encoder whose features it decodes).
Nothing is ever unpickled.

Sizes in a crafted header: safetensors itself refuses a header length past the end of the file
(or over 100 MB) and tensors whose byte ranges do not tile the file exactly, before allocating
anything (tests/io/test_hostile_sizes.py holds it to that). What it cannot know is the network
``dimctl.config`` describes, which is built before the weights are loaded: a 300-byte file
whose config asks for a 400,000-wide layer took 7 GB. So the network is first built on PyTorch's
meta device (shapes only, no memory) and its tensor names and shapes compared with the file's;
only a config the file's tensors fill exactly is built for real.
"""

import errno
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dimctl import __version__
from dimctl.errors import ArtifactError, UsageError
from dimctl.io.atomic import atomic_path
from dimctl.io.reading import require_file
from dimctl.models.decoders import DecoderConfig, build_decoder
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.models.generators import GeneratorConfig, build_generator

SCHEMA = 1
# The command that makes each kind, for the hint when a file lacks dimctl metadata.
MADE_BY = {"encoder": "pretrain", "decoder": "reconstruct", "generator": "generate train"}


@dataclass
class EncoderArtifact:
    encoder: nn.Module
    config: EncoderConfig
    metadata: dict[str, str]
    sha256: str
    path: Path

    @property
    def dataset(self) -> dict:
        return json.loads(self.metadata["dimctl.dataset"])


@dataclass
class DecoderArtifact:
    decoder: nn.Module
    config: DecoderConfig
    metadata: dict[str, str]
    sha256: str
    path: Path

    @property
    def dataset(self) -> dict:
        return json.loads(self.metadata["dimctl.dataset"])

    @property
    def encoder(self) -> dict:
        """The encoder it decodes: sha256, path and layer."""
        return json.loads(self.metadata["dimctl.encoder"])


# A header entry is a few levels deep (the run settings: two). A deeper one is crafted: it would
# overflow the stack of whatever walks it later (json.dumps in inspect, extract), so it is refused here.
HEADER_DEPTH = 32
# The JSON type each dimctl.* entry holds, and the types of the dataset fields commands read
# (preprocess, export, dataset_for): a header of the wrong shape is refused once, where it is read.
HEADER_SHAPES = {"dimctl.config": dict, "dimctl.dataset": dict, "dimctl.training": dict, "dimctl.encoder": dict,
                 "dimctl.layers": list}
DATASET_FIELDS = {"name": str, "source": (str, type(None)), "normalisation": (dict, type(None)), "attributes": list,
                  "multi_label": bool, "channels": int, "image_size": (int, type(None)), "image_shape": list,
                  "num_train": int, "num_test": int, "num_classes": int}


def nesting(value) -> int:
    """How many levels of lists and objects ``value`` holds (iterative: it never recurses itself)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def bounded_json(text: str, depth: int = HEADER_DEPTH):
    """json.loads, refusing (ValueError) nesting past ``depth`` levels or past Python's stack."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if nesting(value) > depth:
        raise ValueError(f"nested more than {depth} levels deep")
    return value


def checked_entry(name: str, key: str, text: str):
    """One dimctl.* header entry decoded and of its expected shape, or ArtifactError naming file and key."""
    shape = HEADER_SHAPES[key]
    try:
        value = bounded_json(text)
    except ValueError as e:
        raise ArtifactError(f"{name}: {key} is not a readable JSON entry ({e})") from None
    if not isinstance(value, shape):
        raise ArtifactError(f"{name}: {key} is a JSON {json_type(value)}, not {_with_article(json_type(shape()))}")
    if key == "dimctl.dataset":
        for field, kind in DATASET_FIELDS.items():
            if field in value and (not isinstance(value[field], kind)
                                   or isinstance(value[field], bool) and kind is not bool):
                raise ArtifactError(f"{name}: {key} field {field!r} is a JSON {json_type(value[field])}, "
                                    f"not what dimctl writes")
    return value


def json_type(value) -> str:
    """A value's type in JSON's words (object, array, string, …), as a message names it."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def describe_metadata(metadata: dict[str, str], name: str = "the header") -> dict:
    """The dimctl.* header entries with their JSON values decoded, keys without the prefix; an
    entry of the wrong shape or depth (HEADER_SHAPES) is an ArtifactError naming ``name`` and it."""
    out = {}
    for key, value in metadata.items():
        if key in HEADER_SHAPES:
            out[key.removeprefix("dimctl.")] = checked_entry(name, key, value)
        elif key.startswith("dimctl."):
            try:
                out[key.removeprefix("dimctl.")] = bounded_json(value)
            except ValueError:  # a plain string (kind, version) or one nested too deeply: shown as written
                out[key.removeprefix("dimctl.")] = value
    return out


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save(path: str | Path, module: nn.Module, kind: str, config: dict, dataset: dict, step: int,
          training: dict | None, extra: dict[str, dict] | None = None) -> Path:
    """Write one network's tensors with the self-describing header, atomically."""
    metadata = {
        "dimctl.kind": kind,
        "dimctl.schema": str(SCHEMA),
        "dimctl.config": json.dumps(config),
        **{f"dimctl.{key}": json.dumps(value) for key, value in (extra or {}).items()},
        "dimctl.dataset": json.dumps(dataset),
        "dimctl.version": __version__,
        "dimctl.step": str(step),
    }
    if training is not None:
        metadata["dimctl.training"] = json.dumps(training)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        _save_file(tensors, tmp, metadata)
        canonical_header(tmp)
    return Path(path)


def _save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors' save_file with its write errors as OSError: a full disk is then the one line
    "No space left on device" naming the file the user named, not a raw SafetensorError."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:  # "Error while serializing: I/O error: No space left on device (os error 28)"
        found = re.search(r"os error (\d+)|code: (\d+)", str(e))
        number = int(found[1] or found[2]) if found else errno.EIO
        raise OSError(number, os.strerror(number), str(path)) from e


def canonical_header(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header in place with its keys sorted. safetensors writes
    the header from a Rust HashMap, whose order is random per process: two bit-identical runs
    gave encoder.safetensors files with different bytes (and sha256). The entries are the same,
    only reordered, and both serialisers write compact JSON with the same escapes, so the sorted
    header has the header's length and the tensor bytes after it stay where they are."""
    with open(path, "r+b") as f:
        length = int.from_bytes(f.read(8), "little")
        header = f.read(length)
        text = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        # Never longer in practice; if a future serialiser ever differs, the valid file stays as written.
        if len(text) <= length:
            f.seek(8)
            f.write(text.ljust(length))  # safetensors pads its header with spaces too


def save_encoder(path: str | Path, encoder: nn.Module, config: EncoderConfig, dataset: dict,
                 step: int, training: dict | None = None) -> Path:
    return _save(path, encoder, "encoder", config.to_dict(), dataset, step, training)


def read_metadata(path: str | Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """Header metadata and tensor shapes of a safetensors file, without loading the tensors."""
    path = Path(path)
    require_file(path)  # a FIFO or device is refused, never read (it would block or never end)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{path} is not a readable safetensors file ({e})") from e
    return metadata, shapes


def _read_checked(path: Path, kind: str) -> tuple[dict[str, str], dict[str, list[int]]]:
    """The header metadata and tensor shapes of a dimctl artifact of ``kind`` and the current
    schema, or ArtifactError."""
    metadata, shapes = read_metadata(path)
    found = metadata.get("dimctl.kind")
    if found is None:
        raise ArtifactError(f"{path} is a safetensors file without dimctl metadata; make {kind}s with `dimctl {MADE_BY[kind]}`")
    if found != kind:
        raise ArtifactError(f"{path} holds a dimctl {found}, not {_with_article(kind)}")
    if metadata.get("dimctl.schema") != str(SCHEMA):
        raise ArtifactError(f"{path} has {kind} schema {metadata.get('dimctl.schema')!r}; this dimctl reads schema {SCHEMA}")
    describe_metadata(metadata, str(path))  # every JSON entry of the right shape, before anything reads one
    return metadata, shapes


def _build_matching(path: Path, build: Callable[[Any], nn.Module], config: Any, shapes: dict[str, list[int]],
                    described: str) -> nn.Module:
    """``build(config)``, once a build on the meta device (no memory) shows that its tensors are
    the file's ``shapes``: a crafted config must not allocate what the file's tensors never fill."""
    with torch.device("meta"):
        expected = {key: list(t.shape) for key, t in build(config).state_dict().items()}
    if expected != shapes:
        raise ArtifactError(f"{path}: weights do not match the {described} its config describes "
                            f"({_first_difference(expected, shapes)}); not built")
    return build(config)


def _first_difference(expected: dict[str, list[int]], found: dict[str, list[int]]) -> str:
    values = sum(math.prod(shape) for shape in expected.values())
    needs = f"the config needs {len(expected)} tensors of {values:,} values"
    for key, shape in expected.items():
        if found.get(key) != shape:
            return f"{needs}; {key} is {shape} in the config, {found.get(key, 'absent')} in the file"
    extra = next(key for key in found if key not in expected)
    return f"{needs}; the file also holds {extra}"


def _with_article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _load_weights(path: Path, module: nn.Module, device: str | torch.device, described: str) -> None:
    """Load the file's tensors into ``module`` strictly; ``described`` names the network for the error."""
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        module.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise ArtifactError(f"{path}: weights do not match the {described} its config describes ({e})") from e
    # NaN or infinite weights (a diverged run published by hand, a damaged copy) would give NaN
    # features, neighbours and JSON from every command; refused here, naming the first such tensor.
    bad = next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise ArtifactError(f"{path}: the {described}'s weights hold NaN or infinite values ({bad}); "
                            f"it cannot be used")
    module.to(device).eval()


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> EncoderArtifact:
    """An encoder file, or a Hugging Face Hub folder of `dimctl export --format hf` (its
    model.safetensors is the encoder file itself, header included)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise UsageError(f"{path} is a folder without model.safetensors; give an encoder .safetensors file "
                             f"or a folder of `dimctl export --format hf`")
        path = path / "model.safetensors"
    metadata, shapes = _read_checked(path, "encoder")
    try:
        config = EncoderConfig.from_dict(json.loads(metadata["dimctl.config"]))
        json.loads(metadata["dimctl.dataset"])
        encoder = _build_matching(path, build_encoder, config, shapes, f"{config.arch} encoder")
    except (KeyError, ValueError, TypeError, RuntimeError, OverflowError) as e:  # torch: sizes it cannot make
        raise ArtifactError(f"{path} has a broken dimctl.config or dimctl.dataset entry ({e})") from e
    _load_weights(path, encoder, device, f"{config.arch} encoder")
    return EncoderArtifact(encoder, config, metadata, sha256_of(path), path)


def save_decoder(path: str | Path, decoder: nn.Module, config: DecoderConfig, encoder_sha256: str,
                 encoder_path: str | Path, layer: str, dataset: dict, step: int,
                 training: dict | None = None) -> Path:
    """A decoder of ``layer`` of one encoder; ``dimctl.encoder`` names that encoder by sha256 and path."""
    encoder = {"sha256": encoder_sha256, "path": str(encoder_path), "layer": layer}
    return _save(path, decoder, "decoder", config.to_dict(), dataset, step, training, extra={"encoder": encoder})


def load_decoder(path: str | Path, device: str | torch.device = "cpu") -> DecoderArtifact:
    path = Path(path)
    metadata, shapes = _read_checked(path, "decoder")
    try:
        config = DecoderConfig.from_dict(json.loads(metadata["dimctl.config"]))
        json.loads(metadata["dimctl.dataset"])
        json.loads(metadata["dimctl.encoder"])["sha256"]
        decoder = _build_matching(path, build_decoder, config, shapes, "decoder")
    except (KeyError, ValueError, TypeError, RuntimeError, OverflowError) as e:  # torch: sizes it cannot make
        raise ArtifactError(f"{path} has a broken dimctl.config, dimctl.encoder or dimctl.dataset entry ({e})") from e
    _load_weights(path, decoder, device, "decoder")
    return DecoderArtifact(decoder, config, metadata, sha256_of(path), path)


@dataclass
class GeneratorArtifact:
    generator: nn.Module
    config: GeneratorConfig
    metadata: dict[str, str]
    sha256: str
    path: Path

    @property
    def dataset(self) -> dict:
        return json.loads(self.metadata["dimctl.dataset"])

    @property
    def training(self) -> dict:
        return json.loads(self.metadata.get("dimctl.training", "{}"))


def save_generator(path: str | Path, generator: nn.Module, config: GeneratorConfig, dataset: dict, step: int,
                   training: dict | None = None) -> Path:
    """An image generator (``dimctl generate train``); ``training`` records the method and its settings."""
    return _save(path, generator, "generator", config.to_dict(), dataset, step, training)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> GeneratorArtifact:
    """The generator rebuilt from its header, in eval mode (batch norm uses its running statistics,
    so a sample does not depend on the others drawn with it)."""
    path = Path(path)
    metadata, shapes = _read_checked(path, "generator")
    try:
        config = GeneratorConfig.from_dict(json.loads(metadata["dimctl.config"]))
        json.loads(metadata["dimctl.dataset"])
        generator = _build_matching(path, build_generator, config, shapes, f"{config.arch} generator")
    except (KeyError, ValueError, TypeError, RuntimeError, OverflowError) as e:  # torch: sizes it cannot make
        raise ArtifactError(f"{path} has a broken dimctl.config or dimctl.dataset entry ({e})") from e
    _load_weights(path, generator, device, f"{config.arch} generator")
    return GeneratorArtifact(generator, config, metadata, sha256_of(path), path)
