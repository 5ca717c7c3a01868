"""Absurd sizes are refused by name before any network is built (issue 40, group 13): exit 2 naming
the flag, never PyTorch's "DefaultCPUAllocator: can't allocate memory". The networks are counted
on the meta device first (dimctl/models/size.py)."""

import pytest
import torch

import dimctl.models.size as size
from dimctl.errors import UsageError
from dimctl.io.memory import MemoryLimit
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import build_models, check_models_fit
from tests.cli.helpers import assert_one_line_error, run_here

DIGITS = ("--dataset", "digits", "--epochs", "1", "--checkpoint-every", "0", "--cpu")

# (command line, the flag the refusal names, the flag it does not name)
ABSURD = [
    (("pretrain", *DIGITS, "--mi-units", "1000000000"), "--mi-units 1000000000", "--y-dim"),
    (("pretrain", *DIGITS, "--width", "1e6"), "--width 1000000.0", "--mi-units"),
    (("pretrain", *DIGITS, "--y-dim", "2000000000"), "--y-dim 2000000000", "--width"),
    (("pretrain", *DIGITS, "--mi-units", "64", "--fc-dim", "3000000000"), "--fc-dim 3000000000", "--mi-units 64"),
    (("pretrain", *DIGITS, "--method", "vae", "--y-dim", "2000000000"), "--y-dim 2000000000", "--width"),
    (("generate", "train", "--steps", "1", "--cpu", "--width", "1000000"), "--width 1000000", "--z-dim"),
    (("generate", "train", "--steps", "1", "--cpu", "--z-dim", "1000000000"), "--z-dim 1000000000", "--width"),
]


@pytest.mark.parametrize("args, named, not_named", ABSURD, ids=[" ".join(a[-2:]) for a, _, _ in ABSURD])
def test_an_absurd_size_is_a_usage_error_naming_its_flag(args, named, not_named, tmp_path):
    result = run_here(*args, "--out", tmp_path / "run")
    assert_one_line_error(result, 2)
    err = result.stderr.decode()
    assert err.startswith(f"dimctl: error: {named}: training the ") and f"lower {named.split()[0]}" in err, err
    assert not_named not in err and "Allocator" not in err, err
    assert not any(p.name != ".dimctl.lock" for p in (tmp_path / "run").glob("*"))  # nothing written


def test_the_meta_count_is_the_real_one():
    config = PretrainConfig.of(mi_units=32, width=0.25, fc_dim=64)
    _, model, discriminator = build_models(config, 1, 32, 100)
    parameters = {id(t): t.numel() for m in (model, discriminator) for t in m.parameters()}
    buffers = {id(t): t.numel() for m in (model, discriminator) for t in m.buffers()}
    assert size.meta_values(lambda: build_models(config, 1, 32, 100)[1:]) == (sum(parameters.values()),
                                                                               sum(buffers.values()))


def test_activations_are_counted_for_the_batch():
    config = EncoderConfig(in_channels=1, image_size=32, width=0.25, fc_dim=64)
    one, eight = (size.meta_activations(lambda: build_encoder(config), (n, 1, 32, 32)) for n in (1, 8))
    assert one > 0 and eight == 8 * one


def test_a_cgroup_cap_refuses_what_fits_the_machine(monkeypatch):
    """Inside a container the cap is what counts; with no flag to blame, every size flag is named."""
    monkeypatch.setattr(size, "usable_memory", lambda: MemoryLimit(50 << 20, from_cgroup=True))
    with pytest.raises(UsageError, match=r"^training the model needs .* its cgroup allows .*; lower --width, "
                                         r"--fc-dim, --y-dim, --mi-units or --batch-size$"):
        check_models_fit(PretrainConfig.of(), torch.device("cpu"), 1, 32)
    check_models_fit(PretrainConfig.of(mi_units=16, width=0.125, fc_dim=32), torch.device("cpu"), 1, 32)  # fits


def test_unknown_memory_checks_nothing(monkeypatch):
    monkeypatch.setattr(size, "usable_memory", lambda: None)
    check_models_fit(PretrainConfig.of(mi_units=10 ** 9), torch.device("cpu"), 1, 32)


def test_on_a_gpu_the_gpu_holds_the_training_and_the_host_the_weights(monkeypatch):
    """No GPU needed: its size is what torch reports for it."""
    class Properties:
        total_memory = 1 << 30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties())
    monkeypatch.setattr(size, "usable_memory", lambda: MemoryLimit(1 << 40, from_cgroup=False))
    big = PretrainConfig.of(mi_units=20000)  # about 6 GiB to train, 1.5 GiB of weights
    with pytest.raises(UsageError, match=r"^--mi-units 20000: training the model this describes needs .*, more than "
                                         r"the GPU's 1\.0 GiB of memory; lower --mi-units$"):
        check_models_fit(big, torch.device("cuda"), 1, 32)
    monkeypatch.setattr(size, "usable_memory", lambda: MemoryLimit(1 << 30, from_cgroup=False))
    monkeypatch.setattr(Properties, "total_memory", 1 << 40)
    with pytest.raises(UsageError, match=r"^--mi-units 20000: building the model this describes needs .*, more than "
                                         r"this machine's 1\.0 GiB of memory; lower --mi-units$"):
        check_models_fit(big, torch.device("cuda"), 1, 32)
