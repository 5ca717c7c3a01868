"""`dimctl report` end to end: real subprocesses over a real tiny run and its probe results."""

import json
from html.parser import HTMLParser

import pytest

from tests.cli.helpers import assert_one_line_error, run, sh, DIMCTL
from tests.report.tiny import TINY, dimctl, lines


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-cli")
    dimctl("pretrain", *TINY, "--out", root / "dim-l")
    dimctl("extract", root / "dim-l" / "encoder.safetensors", "--layer", "fc,y", "-o", root / "dim-l.h5")
    probe = dimctl("probe", root / "dim-l.h5", "--json")
    (root / "probe.jsonl").write_text(probe)
    return root, lines(probe)


def test_report_writes_markdown_html_and_text_and_prints_the_tables(made, tmp_path):
    root, rows = made
    result = run("report", root / "dim-l", root / "probe.jsonl", "--title", "cli test",
                 "-o", tmp_path / "r.md", "-o", tmp_path / "r.html", "-o", tmp_path / "r.txt", "-o", "-")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().splitlines()
    assert out[:3] == [str(tmp_path / "r.md"), str(tmp_path / "r.html"), str(tmp_path / "r.txt")]
    text = "\n".join(out[3:])
    assert text + "\n" == (tmp_path / "r.txt").read_text()
    header, _, body = text.splitlines()[1:4]
    assert header.split() == ["run", "objective", "fc", "svm", "y", "svm"]
    by_layer = {r["layer"]: f"{100 * r['accuracy']:.2f}" for r in rows}
    assert body.split() == ["dim-l", "DIM(L)", "JSD", by_layer["fc"], by_layer["y"]]
    assert (tmp_path / "r_files").is_dir() and "](r_files/" in (tmp_path / "r.md").read_text()
    HTMLParser().feed((tmp_path / "r.html").read_text())
    assert "dimctl: report: " in result.stderr.decode()


def test_results_can_come_from_a_pipe(made, tmp_path):
    root, rows = made
    piped = sh(f"cat {root / 'probe.jsonl'} | {' '.join(DIMCTL)} report {root / 'dim-l'} -", tmp_path)
    assert piped.returncode == 0, piped.stderr.decode()
    assert f"{100 * rows[0]['accuracy']:.2f}" in piped.stdout.decode()


def test_results_kept_by_the_commands_need_no_tee(made, tmp_path):
    """probe, mi and ndm --results-dir keep their lines in a folder (a new file per call, an earlier
    one untouched); the report reads the run folder alone."""
    root, rows = made
    run_dir = tmp_path / "dim-l"
    import shutil

    shutil.copytree(root / "dim-l", run_dir)
    for _ in range(2):
        assert dimctl("probe", root / "dim-l.h5", "--layer", "y", "--results-dir", run_dir) .startswith("test accuracy")
    dimctl("ndm", root / "dim-l.h5", "--steps", "5", "--results-dir", run_dir)
    dimctl("mi", root / "dim-l.h5", "--steps", "5", "--results-dir", run_dir)
    kept = sorted(p.name.split("-")[0] for p in run_dir.glob("*.jsonl") if p.name != "metrics.jsonl")
    assert kept == ["mi", "ndm", "probe", "probe"]
    first = sorted(run_dir.glob("probe-*.jsonl"))[0]
    assert lines(first.read_text()) == [r for r in rows if r["layer"] == "y"]
    text = dimctl("report", run_dir)
    by_layer = {r["layer"]: f"{100 * r['accuracy']:.2f}" for r in rows}
    assert by_layer["y"] in text and "Table 4" in text
    assert_one_line_error(run("probe", root / "dim-l.h5", "--results-dir", root / "probe.jsonl"), 2)


def test_report_errors_are_one_line(made, tmp_path):
    root, _ = made
    assert_one_line_error(run("report"), 2)
    assert_one_line_error(run("report", root / "dim-l", "-o", tmp_path / "r.pdf"), 2)
    (tmp_path / "table.txt").write_text("test accuracy (%)\n")
    err = run("report", tmp_path / "table.txt")
    assert_one_line_error(err, 2)
    assert "not JSON" in err.stderr.decode()
    assert not list(tmp_path.glob("r.*"))


def test_neighbors_rows_match_the_extracted_features(made, tmp_path):
    """`dimctl neighbors`: the distances it prints are those between the test split's sigmoid(y) features."""
    import h5py
    import numpy as np
    from PIL import Image

    root, _ = made
    result = run("neighbors", root / "dim-l" / "encoder.safetensors", "-n", "3", "--distance", "l2", "--out", tmp_path / "nn")
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert rows == [json.loads(line) for line in (tmp_path / "nn" / "neighbors.jsonl").read_text().splitlines()]
    assert [r["class"] for r in rows] == list(range(10))
    with h5py.File(root / "dim-l.h5") as f:
        y = 1 / (1 + np.exp(-f["test/y"][:].astype(np.float64)))
        labels = f["test/labels"][:]
    for r in rows:
        assert labels[r["query"]] == r["class"] and r["neighbor_labels"] == labels[r["neighbors"]].tolist()
        distances = np.sqrt(((y - y[r["query"]]) ** 2).sum(1))
        distances[r["query"]] = np.inf
        assert r["neighbors"] == np.argsort(distances, kind="stable")[:3].tolist()
        assert r["distances"] == pytest.approx(distances[r["neighbors"]], abs=1e-5)
    with Image.open(tmp_path / "nn" / "neighbors.png") as png:
        assert png.size == (4 * 32 + 5 * 2, 10 * 32 + 11 * 2)  # query + 3 neighbours, one row per class
    assert_one_line_error(run("neighbors", root / "dim-l" / "encoder.safetensors", "--distance", "hamming",
                              "--out", tmp_path / "bad"), 2)
    assert not (tmp_path / "bad").exists()
