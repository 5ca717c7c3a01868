"""An encoder in formats other tools read: ONNX, TorchScript, and a Hugging Face Hub folder.

Each carries the preprocessing the encoder was trained with (``preprocessing``), so a consumer
without dimctl can feed it raw images: ONNX in the model's metadata_props, TorchScript in the
extra file ``dimctl.json``, the Hub folder in ``config.json``. Every output is written atomically:
a failed export leaves nothing behind (and an existing output untouched).
"""

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from dimctl import __version__
from dimctl.errors import DimctlError, UsageError
from dimctl.io.artifacts import EncoderArtifact, describe_metadata
from dimctl.io.atomic import atomic_folder, atomic_path, owned_names
from dimctl.io.reading import require_file

FORMATS = ("onnx", "torchscript", "hf")
INPUT_NAME = "images"
TORCHSCRIPT_EXTRA = "dimctl.json"
HF_WEIGHTS, HF_CONFIG, HF_CARD = "model.safetensors", "config.json", "README.md"
HF_FILES = owned_names(r"model\.safetensors|config\.json|README\.md")
# What normalise() (data/transforms.py) does, for a header that predates the dataset's own entry.
DEFAULT_NORMALISATION = {"scale": "x/255", "mean": 0.5, "std": 0.5, "range": [-1, 1]}


def preprocessing(artifact: EncoderArtifact) -> dict:
    """How raw images become the encoder's input: (pixels / 255 - mean) / std per channel, as
    float32 NCHW batches of ``input_shape``."""
    config, dataset = artifact.config, artifact.dataset
    norm = dataset.get("normalisation") or DEFAULT_NORMALISATION
    channels = config.in_channels

    def per_channel(value) -> list[float]:
        return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * channels

    name = str(dataset.get("name", ""))
    # As dimctl.Encoder.preprocess fits sizes: image files are resized when read, tensor datasets padded or resized.
    fit = ("resize bilinearly to image_size" if name == "folder" or name.startswith("hf:") else
           "zero-pad symmetrically when at most 4 pixels smaller (28 to 32), else resize bilinearly")
    return {"input_name": INPUT_NAME, "layout": "NCHW", "dtype": "float32",
            "input_shape": [channels, config.image_size, config.image_size],
            "channels": channels, "image_size": config.image_size,
            "color": "grey" if channels == 1 else "RGB",
            "pixel_scale": 1 / 255, "mean": per_channel(norm.get("mean", 0.5)), "std": per_channel(norm.get("std", 0.5)),
            "range": norm.get("range", [-1, 1]), "fit": fit}


def export_metadata(artifact: EncoderArtifact, layers: list[str] | None) -> dict:
    """What every format records besides the network: where it came from and how to feed it."""
    header = describe_metadata(artifact.metadata)
    out = {"preprocessing": preprocessing(artifact), "config": artifact.config.to_dict(),
           "dataset": artifact.dataset, "sha256": artifact.sha256, "step": header.get("step"),
           "version": __version__}
    if layers is not None:
        out["outputs"] = layers
    return out


class _Taps(nn.Module):
    """The encoder with only the chosen taps as outputs, in order (ONNX names them; TorchScript keys them)."""

    def __init__(self, network: nn.Module, layers: list[str], as_dict: bool):
        super().__init__()
        self.network, self.layers, self.as_dict = network, list(layers), as_dict

    def forward(self, x: torch.Tensor):
        taps = self.network(x)
        if self.as_dict:
            return {layer: taps[layer] for layer in self.layers}
        return tuple(taps[layer] for layer in self.layers)


def _example(artifact: EncoderArtifact) -> torch.Tensor:
    # Batch 2: a batch of 1 would let the exporters treat the batch size as a constant.
    return torch.zeros(2, artifact.config.in_channels, artifact.config.image_size, artifact.config.image_size)


def _cpu_eval(artifact: EncoderArtifact) -> nn.Module:
    return artifact.encoder.to("cpu").eval()


def export_onnx(artifact: EncoderArtifact, layers: list[str], path: str | Path) -> Path:
    """One .onnx file: input ``images`` (N, C, S, S) with a dynamic N, one output per tap, named after it."""
    try:
        import onnx
        import onnxscript  # noqa: F401  torch.onnx's exporter needs it; checked here for a one-line error
    except ImportError:
        raise UsageError("--format onnx needs the onnx extra: pip install 'dimctl[onnx]'") from None
    model = _Taps(_cpu_eval(artifact), layers, as_dict=False).eval()
    try:
        with torch.no_grad():
            program = torch.onnx.export(model, (_example(artifact),), None, input_names=[INPUT_NAME],
                                        output_names=list(layers), dynamo=True, verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        external_data=False)
        proto = program.model_proto
    except Exception as e:  # the exporter's many failure types (dynamo, onnxscript): one line, not a traceback
        raise DimctlError(f"ONNX export of the {artifact.config.arch} encoder failed: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
    props = {f"dimctl.{key}": value if isinstance(value, str) else json.dumps(value)
             for key, value in export_metadata(artifact, layers).items()}
    onnx.helper.set_model_props(proto, props)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))  # weights inside the one file: a 2 GB protobuf is far above any encoder here
    return Path(path)


def export_torchscript(artifact: EncoderArtifact, layers: list[str], path: str | Path) -> Path:
    """A traced TorchScript module: ``forward(images)`` → dict of the chosen taps. Loads with
    ``torch.jit.load`` alone; the metadata is its extra file ``dimctl.json``."""
    model = _Taps(_cpu_eval(artifact), layers, as_dict=True).eval()
    with warnings.catch_warnings():
        # torch 2.9+ marks torch.jit deprecated; it is still what loads with torch alone, as asked.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # Sizes read from the input's shape become constants in the trace: meant, the input size is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            with torch.no_grad():
                # strict=False: the output is a dict; check_trace off: it reruns the model for no gain here
                traced = torch.jit.trace(model, _example(artifact), strict=False, check_trace=False)
        except Exception as e:  # tracing failures come as several types: one line, not a traceback
            raise DimctlError(f"TorchScript export of the {artifact.config.arch} encoder failed: {e}") from e
        extra = {TORCHSCRIPT_EXTRA: json.dumps(export_metadata(artifact, layers), indent=2)}
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files=extra)
    return Path(path)


def read_probe_rows(path: str | Path, sha256: str) -> list[dict]:
    """The probe results of one encoder from a JSON-lines file of `dimctl probe --json` rows.
    Other commands' lines are skipped; a probe of another encoder is refused (its numbers would
    describe a different model)."""
    from dimctl.io.result_lines import read_result_file  # the one reader of result lines (bounded, typed)

    path = Path(path)
    require_file(path, f"--results {path}")  # a FIFO or device is refused, never read (it would block)
    rows = []
    for number, row in enumerate(read_result_file(path), 1):
        if row.get("command") != "probe":
            continue
        if row.get("encoder") not in (None, sha256):
            raise UsageError(f"--results {path}: row {number} is a probe of encoder {str(row['encoder'])[:12]}…, "
                             f"not of this one ({sha256[:12]}…)")
        rows.append(row)
    if not rows:
        raise UsageError(f"--results {path} holds no `dimctl probe --json` rows")
    return rows


def hf_config(artifact: EncoderArtifact) -> dict:
    """config.json of the Hub folder: the encoder's config, dataset and preprocessing."""
    return {"library_name": "dimctl", "model_type": "dimctl-encoder", "architecture": artifact.config.arch,
            "weights": HF_WEIGHTS, **export_metadata(artifact, None)}


def model_card(artifact: EncoderArtifact, results: list[dict] | None = None) -> str:
    """README.md of the Hub folder: what the encoder is, how it was trained, how to load it, and its probe results."""
    header = describe_metadata(artifact.metadata)
    config, dataset, prep = artifact.config, artifact.dataset, preprocessing(artifact)
    training = header.get("training") if isinstance(header.get("training"), dict) else {}
    method = training.get("method", "dim")
    lines = ["---", "library_name: dimctl", "tags:", "- deep-infomax", "- representation-learning",
             "- self-supervised", "---", "",
             f"# {config.arch} encoder trained with {method} on {dataset.get('name', '?')}", "",
             "A Deep InfoMax (Hjelm et al., ICLR 2019) image encoder made by dimctl; "
             "its representation Y is "
             f"{config.y_dim}-dimensional.", "",
             "## Use", "", "```python", "import dimctl", "",
             'encoder = dimctl.load_encoder("path/to/this/folder")  # after huggingface_hub.snapshot_download',
             "y = encoder(encoder.preprocess(images))", "```", "",
             "## Preprocessing", "",
             f"Input: float32 batches (N, {prep['channels']}, {prep['image_size']}, {prep['image_size']}) "
             f"({prep['color']}), each channel (pixels / 255 - mean) / std with mean {prep['mean']} and std "
             f"{prep['std']}, giving values in {prep['range']}. Other sizes: {prep['fit']}. "
             "`config.json` holds these under `preprocessing`.", "",
             "## Training", "", "| setting | value |", "|---|---|",
             f"| architecture | {config.arch} |", f"| dataset | {dataset.get('name', '?')} |",
             f"| steps | {header.get('step', '?')} |", f"| dimctl version | {header.get('version', '?')} |",
             f"| sha256 of model.safetensors | `{artifact.sha256}` |"]
    if training:
        lines += ["", "### Every run setting (the encoder's header, `dimctl.training`)", "",
                  "| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in training.items()]
    lines += ["", "## Encoder configuration", "", "```json", json.dumps(config.to_dict(), indent=2), "```"]
    if results:
        lines += ["", "## Probe results (`dimctl probe`)", "",
                  "| features | layer | classifier | test accuracy (%) | train / test images |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(r.get('features'))} | {_cell(r.get('layer'))} | {_cell(r.get('classifier'))} | "
                  f"{100 * float(r['accuracy']):.2f} | {r.get('n_train', '?')} / {r.get('n_test', '?')} |"
                  for r in results if isinstance(r.get("accuracy"), (int, float))]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def export_hf(artifact: EncoderArtifact, folder: str | Path, results: list[dict] | None = None) -> Path:
    """A folder in the Hub's layout: model.safetensors (the artifact's own bytes, header and sha256
    kept), config.json and a README.md model card; replaced whole, atomically."""
    with atomic_folder(folder, owned=HF_FILES) as tmp:
        shutil.copyfile(artifact.path, tmp / HF_WEIGHTS)
        (tmp / HF_CONFIG).write_text(json.dumps(hf_config(artifact), indent=2) + "\n")
        (tmp / HF_CARD).write_text(model_card(artifact, results))
    return Path(folder)


def require_hub():
    """huggingface_hub, or a one-line UsageError naming the extra (checked before any export work)."""
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError("--push-to-hub needs the hf extra: pip install 'dimctl[hf]'") from None
    return huggingface_hub


def push_to_hub(folder: str | Path, repo: str) -> str:
    """Upload an exported Hub folder to ``repo`` (made if missing); the repository's URL. Needs the
    network and a Hub login (`huggingface-cli login` or HF_TOKEN)."""
    huggingface_hub = require_hub()
    try:
        api = huggingface_hub.HfApi()
        url = api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message="Upload dimctl encoder")
    except Exception as e:  # network, authentication, a bad repo name: one line naming the repo
        raise DimctlError(f"--push-to-hub {repo} failed: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
    return str(url)
