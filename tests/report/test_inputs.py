"""What the report reads: run folders found by walking, result lines, and clear errors for anything else."""

import json
import shutil

import pytest

from dimctl.errors import UsageError
from dimctl.io.result_lines import parse_result_lines
from dimctl.report.inputs import collect


def test_walking_a_folder_finds_runs_measurements_and_loose_results(made):
    inputs = collect([made.root])
    names = [r.name for r in inputs.runs]
    assert names == ["dim-g", "dim-l", "mine-dim-l", "nn-dim-l", "rec-dim-l"]  # checkpoints/ are not runs
    commands = sorted({r["command"] for r in inputs.rows})
    assert commands == ["mine", "ndm", "neighbors", "probe", "reconstruct"]
    # mine's result.json and the copy in results/mine.jsonl are one result, read once.
    assert len([r for r in inputs.rows if r["command"] == "mine"]) == 1
    rec = next(r for r in inputs.runs if r.name == "rec-dim-l")
    assert rec.kinds == {"decoder.safetensors": "decoder"} and rec.about == made.mine[0]["encoder"]
    assert [p.name for p in rec.pictures] == ["reconstructions.png"]
    dim_l = next(r for r in inputs.runs if r.name == "dim-l")
    assert dim_l.config["command"] == "pretrain" and dim_l.metrics and dim_l.encoder_sha256


def test_an_encoder_file_stands_for_its_run_folder(made):
    inputs = collect([made.runs["dim-l"] / "encoder.safetensors"])
    assert [r.name for r in inputs.runs] == ["dim-l"] and inputs.rows == []


def test_broken_lines_and_files_are_named(made, tmp_path):
    bad = tmp_path / "probe.txt"
    bad.write_text('{"command": "probe", "accuracy": 0.5}\ntest accuracy (%)\n')
    with pytest.raises(UsageError, match=r"probe.txt: line 2 is not JSON"):
        collect([bad])
    with pytest.raises(UsageError, match="line 1 is not a JSON object"):
        parse_result_lines("[1, 2]\n", "x")
    with pytest.raises(UsageError, match="no such file or folder"):
        collect([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="found no run folders and no result lines"):
        collect([tmp_path / "empty"])


def test_a_killed_runs_half_line_and_a_fake_png_are_left_out(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made.runs["dim-g"], run, ignore=shutil.ignore_patterns("checkpoints"))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "lo')
    (run / "notes.png").write_text("not a picture")
    (inputs_run,) = collect([run]).runs
    lines = (made.runs["dim-g"] / "metrics.jsonl").read_text().splitlines()
    assert inputs_run.metrics == [json.loads(line) for line in lines] and inputs_run.bad_metric_lines == 1
    assert inputs_run.pictures == []


def test_a_series_of_pictures_in_a_sub_folder_shows_its_first_and_last(made, tmp_path):
    run = tmp_path / "gen"
    shutil.copytree(made.runs["dim-g"], run, ignore=shutil.ignore_patterns("checkpoints"))
    png = (made.root / "rec-dim-l" / "reconstructions.png").read_bytes()
    (run / "samples").mkdir()
    for step in (2, 4, 6, 8, 10, 12, 100):
        (run / "samples" / f"step_{step}.png").write_bytes(png)
    (run / "samples.png").write_bytes(png)
    (inputs_run,) = collect([run]).runs
    shown = [p.relative_to(run).as_posix() for p in inputs_run.pictures]
    assert shown == ["samples.png", "samples/step_2.png", "samples/step_10.png", "samples/step_12.png",
                     "samples/step_100.png"]
    assert inputs_run.pictures_left_out == 3
