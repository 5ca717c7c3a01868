"""Result lines are strict JSON: no NaN or Infinity (strict parsers reject them). An undefined
standard error is null with a reason, any other non-finite result an error naming its input, and
an encoder with NaN weights is refused when loaded."""

import json
import math

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from dimctl.cli.results import result_line
from dimctl.errors import DimctlError
from tests.cli.helpers import assert_one_line_error, run_here


def strict(line: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


def test_result_lines_carry_no_nan_or_infinity():
    row = strict(result_line({"command": "mi", "estimate": 0.5, "stderr": math.nan}, "f.h5"))
    assert row["stderr"] is None and "fewer than 2 evaluation batches" in row["stderr_reason"]
    with pytest.raises(DimctlError, match=r"f\.h5: mi came out nan for 'estimate'"):
        result_line({"command": "mi", "estimate": math.nan, "stderr": 0.1}, "f.h5")
    with pytest.raises(DimctlError, match="non-finite number"):
        result_line({"command": "neighbors", "distances": [1.0, math.inf]}, "enc")


def test_a_test_split_of_one_batch_gives_a_null_stderr(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 300)
    np.savez(tmp_path / "small.npz", train_y=x[:200], test_y=x[200:], train_labels=labels[:200],
             test_labels=labels[200:])
    for command in ("ndm", "mi"):
        result = run_here(command, tmp_path / "small.npz", "--steps", "5")
        assert result.returncode == 0, result.stderr.decode()
        row = strict(result.stdout.decode())
        assert row["eval_batches"] == 1 and row["stderr"] is None and row["stderr_reason"]


def test_an_encoder_with_nan_weights_is_refused_at_load(tmp_path):
    assert run_here("pretrain", "--dataset", "digits", "--epochs", "0", "--mi-units", "8", "--width", "0.25",
                    "--fc-dim", "32", "--out", tmp_path / "run").returncode == 0
    good = tmp_path / "run" / "encoder.safetensors"
    with safe_open(str(good), framework="pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    first = sorted(k for k in state if state[k].is_floating_point())[0]
    state[first][..., 0] = math.nan
    bad = tmp_path / "nan.safetensors"
    save_file(state, str(bad), metadata=metadata)
    for args in (("extract", bad, "-o", tmp_path / "f.h5"), ("neighbors", bad, "--out", tmp_path / "nn")):
        result = run_here(*args)
        assert_one_line_error(result, 3)
        assert f"hold NaN or infinite values ({first})" in result.stderr.decode()
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "nn").exists()
