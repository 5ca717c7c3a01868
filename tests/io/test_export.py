"""`dimctl export` (dimctl/io/export.py): each format computes what the encoder computes, from raw
images fed as its own metadata says, and a failed or refused export leaves nothing behind."""

import errno
import json
import os
import subprocess
import sys
import sysconfig
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from safetensors import safe_open

import dimctl
from dimctl.io.artifacts import save_encoder
from dimctl.models.encoders import EncoderConfig, build_encoder
from tests.cli.helpers import assert_one_line_error, run_here

DATASET = {"name": "digits", "channels": 1, "image_size": 32, "image_shape": [1, 32, 32],
           "normalisation": {"scale": "x/255", "mean": 0.5, "std": 0.5, "range": [-1, 1]}}


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    """A tiny random DCGAN encoder whose batch norms have non-trivial running statistics (eval
    mode then differs from a plain affine map, so a wrong export mode would show)."""
    torch.manual_seed(0)
    config = EncoderConfig(width=0.25, fc_dim=32)
    encoder = build_encoder(config)
    for module in encoder.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("export") / "encoder.safetensors"
    return save_encoder(path, encoder.eval(), config, DATASET, step=7, training={"method": "dim", "lr": 1e-4})


def _raw_images(n: int, seed: int = 1) -> np.ndarray:
    """uint8 grey 28×28 images, as a consumer has them (the encoder takes 32×32: padded)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _consumer_preprocess(raw: np.ndarray, prep: dict) -> np.ndarray:
    """What a consumer without dimctl does with the metadata: scale, normalise, pad to the input size."""
    size = prep["image_size"]
    x = raw[:, None].astype(np.float32) * np.float32(prep["pixel_scale"])
    x = (x - np.array(prep["mean"], np.float32)[None, :, None, None]) / np.array(prep["std"], np.float32)[None, :, None, None]
    pad = (size - raw.shape[-1]) // 2
    pad_value = (0 - prep["mean"][0]) / prep["std"][0]  # a zero pixel, normalised (dimctl pads before normalising)
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value).astype(np.float32)


def _reference(encoder_path, raw: np.ndarray) -> dict:
    encoder = dimctl.load_encoder(encoder_path)
    with torch.no_grad():
        return encoder.features(encoder.preprocess(raw), layers=("local", "conv", "fc", "y"))


def test_onnx_runs_in_onnxruntime_with_a_dynamic_batch_and_matches_torch(encoder_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "e.onnx"
    result = run_here("export", encoder_file, "--format", "onnx", "--layer", "conv,fc,y", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == str(out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["conv", "fc", "y"]
    meta = session.get_modelmeta().custom_metadata_map
    prep = json.loads(meta["dimctl.preprocessing"])
    assert prep["input_shape"] == [1, 32, 32] and prep["mean"] == [0.5] and prep["std"] == [0.5]
    assert json.loads(meta["dimctl.outputs"]) == ["conv", "fc", "y"]
    assert json.loads(meta["dimctl.config"])["fc_dim"] == 32 and json.loads(meta["dimctl.dataset"])["name"] == "digits"
    worst = 0.0
    for n in (1, 5):  # neither is the batch size the export was traced with (2)
        raw = _raw_images(n)
        outputs = session.run(None, {"images": _consumer_preprocess(raw, prep)})
        reference = _reference(encoder_file, raw)
        for name, got in zip(("conv", "fc", "y"), outputs):
            assert got.shape == tuple(reference[name].shape)
            worst = max(worst, float(np.abs(got - reference[name].numpy()).max()))
    print(f"onnxruntime vs torch: max abs difference {worst:.3g}")
    assert worst < 1e-4


def test_onnx_outputs_y_by_default(encoder_file, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "y.onnx"
    assert run_here("export", encoder_file, "--format", "onnx", "-o", out).returncode == 0
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ["y"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch is a name, not a number
    assert {p.key for p in model.metadata_props} >= {"dimctl.preprocessing", "dimctl.sha256", "dimctl.config"}


def test_onnx_without_its_extra_is_a_one_line_error(encoder_file, tmp_path):
    with mock.patch.dict(sys.modules, {"onnxscript": None}):  # None: `import onnxscript` raises ImportError
        result = run_here("export", encoder_file, "--format", "onnx", "-o", tmp_path / "e.onnx")
    assert_one_line_error(result, 2)
    assert "pip install 'dimctl[onnx]'" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_torchscript_loads_and_runs_without_dimctl(encoder_file, tmp_path):
    out = tmp_path / "e.pt"
    assert run_here("export", encoder_file, "--format", "torchscript", "--layer", "conv,y", "-o", out).returncode == 0
    raw = _raw_images(3)
    np.save(tmp_path / "raw.npy", raw)
    # -S: site-packages' .pth files are not run, so the editable install's finder never makes
    # dimctl importable; the folders themselves are added for torch and numpy. cwd is not the repository.
    folders = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    script = f"""
import sys, json
sys.path[:0] = {folders!r}
try:
    import dimctl
except ImportError:
    pass
else:
    raise SystemExit("dimctl is importable here: " + dimctl.__file__)
import numpy as np, torch
extra = {{"dimctl.json": ""}}
module = torch.jit.load("e.pt", _extra_files=extra)
meta = json.loads(extra["dimctl.json"])
prep = meta["preprocessing"]
raw = np.load("raw.npy")
x = (raw[:, None].astype(np.float32) * np.float32(prep["pixel_scale"]) - prep["mean"][0]) / prep["std"][0]
pad = (prep["image_size"] - raw.shape[-1]) // 2
x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-prep["mean"][0] / prep["std"][0])
with torch.no_grad():
    out = module(torch.from_numpy(x.astype(np.float32)))
torch.save({{k: v.clone() for k, v in out.items()}}, "out.pt")
print(json.dumps(meta))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout.strip().splitlines()[-1])
    assert meta["outputs"] == ["conv", "y"] and meta["preprocessing"]["input_shape"] == [1, 32, 32]
    assert meta["sha256"] == dimctl.load_encoder(encoder_file).sha256
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    reference = _reference(encoder_file, raw)
    assert set(got) == {"conv", "y"}
    for name in ("conv", "y"):
        torch.testing.assert_close(got[name], reference[name], rtol=0, atol=1e-5)


def test_torchscript_of_a_folded_encoder_keeps_its_batch_dynamic(tmp_path):
    """The strided-crop encoders read their input size from the input's shape (crop_grid)."""
    from dimctl.io.artifacts import load_encoder
    from dimctl.io.export import export_torchscript

    torch.manual_seed(0)
    config = EncoderConfig(arch="folded-resnet", in_channels=3, width=0.25, fc_dim=32)
    path = save_encoder(tmp_path / "f.safetensors", build_encoder(config).eval(), config, {"name": "cifar10"}, step=0)
    artifact = load_encoder(path)
    export_torchscript(artifact, ["local", "y"], tmp_path / "f.pt")
    module = torch.jit.load(str(tmp_path / "f.pt"))
    x = torch.randn(3, 3, 32, 32)  # the trace saw a batch of 2
    with torch.no_grad():
        got, reference = module(x), artifact.encoder(x)
    for name in ("local", "y"):
        torch.testing.assert_close(got[name], reference[name], rtol=0, atol=1e-5)


def _probe_rows(sha256: str) -> str:
    rows = [{"command": "probe", "features": "f.h5", "layer": "y", "classifier": "linear", "accuracy": 0.875,
             "encoder": sha256, "dataset": "digits", "n_train": 1438, "n_test": 359},
            {"command": "mi", "estimate": 1.5},  # another command's line: not a probe result
            {"command": "probe", "features": "f.h5", "layer": "conv", "classifier": "svm", "accuracy": 0.5,
             "encoder": sha256, "dataset": "digits", "n_train": 1438, "n_test": 359}]
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_hf_folder_loads_with_dimctl_and_describes_the_encoder(encoder_file, tmp_path):
    original = dimctl.load_encoder(encoder_file)
    results = tmp_path / "probe.jsonl"
    results.write_text(_probe_rows(original.sha256))
    folder = tmp_path / "hub"
    result = run_here("export", encoder_file, "--format", "hf", "--results", results, "-o", folder)
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["preprocessing"]["input_shape"] == [1, 32, 32] and config["preprocessing"]["std"] == [0.5]
    assert config["config"]["arch"] == "dcgan" and config["dataset"]["name"] == "digits" and config["step"] == 7
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dimctl\n")
    assert "| y | linear | 87.50 |" in card and "| conv | svm | 50.00 |" in card
    assert "| steps | 7 |" in card and "| lr | 0.0001 |" in card
    loaded = dimctl.load_encoder(folder)
    assert loaded.sha256 == original.sha256
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["dimctl.kind"] == "encoder"
    raw = _raw_images(4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(loaded.preprocess(raw)), original(original.preprocess(raw)), rtol=0, atol=0)


def test_hf_refuses_probe_results_of_another_encoder(encoder_file, tmp_path):
    results = tmp_path / "probe.jsonl"
    results.write_text(_probe_rows("0" * 64))
    result = run_here("export", encoder_file, "--format", "hf", "--results", results, "-o", tmp_path / "hub")
    assert_one_line_error(result, 2)
    assert not (tmp_path / "hub").exists()


def test_push_to_hub_without_huggingface_hub_is_a_one_line_error_before_any_work(encoder_file, tmp_path):
    with mock.patch.dict(sys.modules, {"huggingface_hub": None}):
        result = run_here("export", encoder_file, "--format", "hf", "--push-to-hub", "me/enc", "-o", tmp_path / "hub")
    assert_one_line_error(result, 2)
    assert "pip install 'dimctl[hf]'" in result.stderr.decode()
    assert not (tmp_path / "hub").exists()


def test_push_to_hub_uploads_the_exported_folder(encoder_file, tmp_path):
    """The Hub itself cannot be reached here: a stand-in huggingface_hub records what is asked of it."""
    calls = []

    class HfApi:
        def create_repo(self, repo_id, exist_ok=False):
            calls.append(("create", repo_id, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, commit_message=None):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    fake = types.SimpleNamespace(HfApi=HfApi)
    with mock.patch.dict(sys.modules, {"huggingface_hub": fake}):
        result = run_here("export", encoder_file, "--format", "hf", "--push-to-hub", "me/enc", "-o", tmp_path / "hub")
    assert result.returncode == 0, result.stderr.decode()
    assert calls == [("create", "me/enc", True), ("upload", "me/enc", ["README.md", "config.json", "model.safetensors"])]
    assert "https://huggingface.co/me/enc" in result.stderr.decode()


def test_refusals_and_exit_codes(encoder_file, tmp_path):
    assert_one_line_error(run_here("export", encoder_file, "--format", "tflite", "-o", tmp_path / "e"), 2)
    assert_one_line_error(run_here("export", encoder_file, "--format", "torchscript", "--layer", "pixels",
                                   "-o", tmp_path / "e.pt"), 2)
    assert_one_line_error(run_here("export", encoder_file, "--format", "hf", "--layer", "y", "-o", tmp_path / "h"), 2)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert_one_line_error(run_here("export", bad, "--format", "torchscript", "-o", tmp_path / "e.pt"), 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors"]

    out = tmp_path / "e.pt"
    out.write_bytes(b"old")
    assert_one_line_error(run_here("export", encoder_file, "--format", "torchscript", "-o", out), 2)
    assert out.read_bytes() == b"old"
    assert run_here("export", encoder_file, "--format", "torchscript", "-o", out, "--force").returncode == 0
    assert out.read_bytes() != b"old"


def test_a_failed_export_leaves_nothing(encoder_file, tmp_path):
    def full_disk(module, path, _extra_files=None):
        Path(path).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("torch.jit.save", full_disk):
        result = run_here("export", encoder_file, "--format", "torchscript", "-o", tmp_path / "e.pt")
    assert_one_line_error(result, 1)

    def broken_card(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("dimctl.io.export.model_card", broken_card):
        result = run_here("export", encoder_file, "--format", "hf", "-o", tmp_path / "hub")
    assert_one_line_error(result, 1)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary
