"""One CLI vocabulary: `-o/--output FILE`, `--out DIR`, `--layer` (a comma list), `-n/--num`; every
command that writes refuses to replace its output without --force; the old spellings still work
for one release with one warning line. In-process: the argument handling is what is under test."""

import json

import pytest

from dimctl.cli import deprecations
from dimctl.cli.main import run

TINY = ["--epochs", "0", "--mi-units", "8", "--width", "0.125", "--fc-dim", "16", "--precision", "fp32"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("vocabulary") / "run"
    assert run(["pretrain", *TINY, "--out", str(out)]) == 0
    return out / "encoder.safetensors"


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("dimctl: warning:")]


@pytest.mark.parametrize("args, expected", [
    (["pretrain", "-o", "r"], ["pretrain", "--out", "r"]),
    (["generate", "train", "-o=r"], ["generate", "train", "--out=r"]),
    (["extract", "e", "--layers", "y", "-o", "f.h5"], ["extract", "e", "--layer", "y", "-o", "f.h5"]),
    (["reconstruct", "e", "--from", "conv", "-o", "d"], ["reconstruct", "e", "--layer", "conv", "--out", "d"]),
    (["neighbors", "e", "--neighbors", "8"], ["neighbors", "e", "--num", "8"]),
    (["generate", "sample", "g", "--out-dir", "d", "-o", "x"], ["generate", "sample", "g", "--out", "d", "-o", "x"]),
    (["probe", "-o", "x", "--layers"], ["probe", "-o", "x", "--layers"]),  # not a renamed command: untouched
    (["extract", "e", "--", "--layers"], ["extract", "e", "--", "--layers"]),  # after --: positional
])
def test_old_spellings_are_rewritten_with_one_warning_each(args, expected):
    rewritten, warnings = deprecations.rewrite(args)
    assert rewritten == expected
    assert len(warnings) == sum(a != b for a, b in zip(args, expected))
    assert all("is deprecated and will be removed: use" in w for w in warnings)


def test_old_folder_and_layer_spellings_still_run(encoder, tmp_path, capsys):
    out = tmp_path / "r"
    assert run(["pretrain", *TINY, "-o", str(out)]) == 0
    assert _warnings(capsys.readouterr().err) == [
        "dimctl: warning: `dimctl pretrain -o` is deprecated and will be removed: use --out (-o/--output names a file)"]
    assert (out / "encoder.safetensors").is_file()
    assert run(["extract", str(encoder), "--layers", "y", "-o", str(tmp_path / "f.h5")]) == 0
    (warning,) = _warnings(capsys.readouterr().err)
    assert "`dimctl extract --layers` is deprecated" in warning and "use --layer" in warning
    # mi's --x/--y fold into --layer X,Y.
    assert run(["mi", str(tmp_path / "f.h5"), "--x", "y", "--steps", "2", "--batch-size", "16"]) == 0
    captured = capsys.readouterr()
    assert "use --layer y,labels" in _warnings(captured.err)[0]
    row = json.loads(captured.out)
    assert (row["x"], row["y"]) == ("y", "labels")


def test_extract_refuses_to_replace_a_file_without_force(encoder, tmp_path, capsys):
    target = tmp_path / "f.h5"
    assert run(["extract", str(encoder), "--layer", "y", "-o", str(target)]) == 0
    before = target.read_bytes()
    capsys.readouterr()
    assert run(["extract", str(encoder), "--layer", "fc", "-o", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dimctl: error: -o {target} already exists; pass --force to replace it"]
    assert target.read_bytes() == before
    assert run(["extract", str(encoder), "--layer", "fc", "-o", str(target), "--force"]) == 0
    assert target.read_bytes() != before


def test_folder_commands_refuse_to_replace_their_outputs_without_force(encoder, tmp_path, capsys):
    out = tmp_path / "nn"
    flags = ["neighbors", str(encoder), "-n", "2", "--out", str(out)]
    assert run(flags) == 0
    grid = (out / "neighbors.png").read_bytes()
    capsys.readouterr()
    assert run(flags) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (out / "neighbors.png").read_bytes() == grid
    assert run([*flags, "--force"]) == 0
    rows = [json.loads(line) for line in (out / "neighbors.jsonl").read_text().splitlines()]
    assert all(len(r["neighbors"]) == 2 for r in rows)
    # mine checks before it trains anything.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "result.json").write_text("{}\n")
    assert run(["mine", str(encoder), "--steps", "1", "--out", str(tmp_path / "m")]) == 2
    assert (tmp_path / "m" / "result.json").read_text() == "{}\n"


def test_report_refuses_to_replace_a_file_without_force(encoder, tmp_path, capsys):
    target = tmp_path / "report.txt"
    target.write_text("mine\n")
    assert run(["report", str(encoder.parent), "-o", str(target)]) == 2
    assert target.read_text() == "mine\n"
    assert run(["report", str(encoder.parent), "-o", str(target), "--force"]) == 0
    assert target.read_text() != "mine\n"


def test_a_config_file_may_still_use_an_old_key(encoder, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[extract]\nlayers = "y"\n')
    assert run(["--config", str(config), "extract", str(encoder), "-o", str(tmp_path / "f.h5")]) == 0
    assert "use 'layer'" in _warnings(capsys.readouterr().err)[0]
