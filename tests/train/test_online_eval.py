"""`pretrain --eval-every`: the online weighted-kNN accuracy rises while DIM trains, equals
`dimctl probe --classifier knn` with the same protocol on the published encoder, and leaves
training itself unchanged."""

import json

import pytest
from safetensors.torch import load_file

from tests.cli.helpers import assert_one_line_error, run_here

SMALL = ["--dataset", "digits", "--mi-units", "32", "--width", "0.25", "--fc-dim", "64", "--batch-size", "32",
         "--checkpoint-every", "0", "--epochs", "3"]
BANK = "700"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    # A bank of 700 of digits' 1,438 training images: the probe must cut its bank to match (all 359 test
    # images are the queries either way).
    result = run_here("pretrain", *SMALL, "--eval-every", "22", "--eval-layers", "y,fc", "--eval-images", BANK,
                      "--out", root / "eval")
    assert result.returncode == 0, result.stderr.decode()
    return root


def test_online_knn_rises_and_is_logged_with_time(evaluated):
    lines = [json.loads(line) for line in (evaluated / "eval" / "metrics.jsonl").read_text().splitlines()]
    scored = [line for line in lines if "knn_y" in line]
    assert [line["step"] for line in scored] == [22, 44, 66, 88, 110, 132]  # every 22 steps; the last is 132
    assert all(0.0 <= line["knn_fc"] <= 1.0 for line in scored)
    assert scored[-1]["knn_y"] > scored[0]["knn_y"] + 0.02
    elapsed = [line["elapsed_s"] for line in lines]
    assert elapsed == sorted(elapsed) and all(line["time"].endswith("+00:00") for line in lines)


def test_online_knn_equals_the_probe_with_the_same_protocol(evaluated):
    last = [json.loads(line) for line in (evaluated / "eval" / "metrics.jsonl").read_text().splitlines()][-1]
    features = evaluated / "f.h5"
    assert run_here("extract", evaluated / "eval" / "encoder.safetensors", "--layer", "y,fc", "-o", features).returncode == 0
    protocol = ["--classifier", "knn", "--knn-weights", "distance", "--knn-k", "200", "--knn-temperature", "0.07"]
    probed = run_here("probe", features, "--layer", "y,fc", *protocol, "--knn-bank", BANK, "--json")
    rows = {r["layer"]: r for r in map(json.loads, probed.stdout.decode().splitlines())}
    assert rows["y"]["knn"] == f"cosine k=200 weights=distance T=0.07 bank={BANK}"
    assert rows["y"]["accuracy"] == pytest.approx(last["knn_y"], abs=1e-6)
    assert rows["fc"]["accuracy"] == pytest.approx(last["knn_fc"], abs=1e-6)
    # The whole training split as the bank is another protocol, with another number and name.
    whole = run_here("probe", features, "--layer", "y,fc", *protocol, "--json")
    whole_rows = {r["layer"]: r for r in map(json.loads, whole.stdout.decode().splitlines())}
    assert whole_rows["y"]["knn"] == "cosine k=200 weights=distance T=0.07"
    assert any(abs(whole_rows[layer]["accuracy"] - last[f"knn_{layer}"]) > 1e-3 for layer in ("y", "fc"))


def test_online_evaluation_changes_nothing_in_training(evaluated, tmp_path):
    assert run_here("pretrain", *SMALL, "--out", tmp_path / "plain").returncode == 0
    with_eval = load_file(evaluated / "eval" / "encoder.safetensors")
    without = load_file(tmp_path / "plain" / "encoder.safetensors")
    assert with_eval.keys() == without.keys() and all((with_eval[k] == without[k]).all() for k in with_eval)
    assert_one_line_error(run_here("pretrain", *SMALL, "--eval-every", "5", "--eval-layers", "z", "--out", tmp_path / "b"), 2)
    assert_one_line_error(run_here("probe", tmp_path / "x.h5", "--knn-weights", "cosine"), 2)
