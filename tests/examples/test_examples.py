"""examples/Makefile cannot rot: `make quick` runs the whole chain (pretrain → extract → probe → NDM,
MINE, decoder → neighbours → α/β sweep → report) on digits with tiny settings, then
`make quick-baselines` adds a comparison method beside the DIM runs it made."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# No thread setting: under make -j2 each dimctl job takes its share of the cores itself (dimctl/threads.py).
ENV = {**{k: v for k, v in os.environ.items() if k not in ("DIMCTL_THREADS", "OMP_NUM_THREADS")}, "DIMCTL_NO_PROGRESS": "1"}


def make(*args, out: Path):
    command = ["make", "-f", str(ROOT / "examples" / "Makefile"), "-j2", *args, f"QUICK_OUT={out}",
               f"DIMCTL={sys.executable} -m dimctl"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=900)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_quick_runs_the_whole_chain_and_resumes(tmp_path):
    out = tmp_path / "quick"
    result = make("quick", out=out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("report.md", "report.html", "report.txt"):
        assert (out / name).is_file()
    assert (out / "report_files").is_dir() and any((out / "report_files").glob("ablation-*.png"))
    text = (out / "report.txt").read_text()
    assert text in result.stdout  # the target ends by printing the tables

    # Table 1's cells are the probe results the pipeline wrote.
    lines = text.splitlines()
    header = re.split(r"\s{2,}", lines[1].strip())  # cells are two or more spaces apart
    assert header[:2] == ["run", "objective"]
    columns = header[2:]  # "conv svm", "conv mlp epochs=5" (quick's probe setting, named), …
    body = lines[3:lines.index(next(line for line in lines if line.startswith("Test accuracy")))]
    table = {line.split()[0]: line.split()[-len(columns):] for line in body}
    assert sorted(table) == ["ablation/a1-b0-g0.1", "ablation/a1-b1-g0.1", "dim-g-jsd", "dim-l-jsd"]
    probes = [json.loads(line) for f in sorted((out / "results").rglob("*.probe.jsonl")) for line in f.read_text().splitlines()]
    assert len(probes) == 2 * 6 + 2 * 3  # dim-g, dim-l: svm and mlp; two more sweep runs: svm
    for row in probes:
        run = re.sub(r"\.h5$", "", os.path.relpath(row["features"], out))
        classifier = "mlp epochs=5" if row["classifier"] == "mlp" else row["classifier"]
        cell = table[run][columns.index(f"{row['layer']} {classifier}")]
        assert cell == f"{100 * row['accuracy']:.2f}", (run, row)
    assert "Table 4" in text and "Nearest neighbours" in text and "Sweep digits: α × β; γ=0.1" in text

    # Everything is a file target: a second run has nothing left to do.
    again = make("quick", out=out)
    assert again.returncode == 0 and "-m dimctl " not in again.stdout, again.stdout  # no dimctl command ran
    assert text in again.stdout

    # Table 1 with the comparison methods, in the same folder: the DIM runs above are reused.
    result = make("quick-baselines", "BASELINE_METHODS=ae", out=out)  # one method: each is the same recipe
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = (out / "table1-baselines.txt").read_text()
    rows = {}  # each run's first line: Table 1 (the folder's other runs add later tables)
    for line in text.splitlines()[3:]:
        if line.split() and not line.startswith("Test"):
            rows.setdefault(line.split()[0], line)
    assert {"dim-g-jsd", "dim-l-jsd", "method-ae"} <= set(rows), text
    assert " AE " in rows["method-ae"] and "DIM(L) JSD" in rows["dim-l-jsd"]
    assert (out / "method-ae" / "decoder.safetensors").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_gpu_table1_recipe_runs_the_papers_settings(tmp_path):
    # The recipe's commands, printed by make -n (nothing runs): every Table 1 run at the paper's settings.
    env = {**ENV, "MAKE_ARGS": "-n", "SHORT": "1", "OUT": str(tmp_path / "c10"), "DIMCTL": "dimctl"}
    done = subprocess.run(["bash", str(ROOT / "examples" / "gpu" / "cifar10-table1.sh")], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    pretrains = [line for line in done.stdout.splitlines() if line.startswith("dimctl pretrain")]
    runs = sorted(line.split("--out ")[1].split()[0].rsplit("/", 1)[1] for line in pretrains)
    assert runs == ["dim-g-dv", "dim-g-infonce", "dim-g-jsd", "dim-l-dv", "dim-l-infonce", "dim-l-jsd", "random"]
    for line in pretrains:
        for setting in ("--dataset cifar10", "--mi-units 2048", "--batch-size 64", "--lr 1e-4", "--precision auto",
                        "--compile"):
            assert setting in line, (setting, line)
        assert ("--epochs 0" in line) if "/random " in line else ("--epochs 20" in line)
    assert any(line.startswith("dimctl report") and "--paper" in line for line in done.stdout.splitlines())


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_budget_target_fixes_its_runs_before_any_result(tmp_path):
    # The plan, printed by make -n (nothing runs): every objective × epochs × seed, each longer budget
    # continuing a copy of the next shorter run, untrained encoders of the same seeds, probes, the report.
    env = {**ENV, "MAKEFLAGS": ""}
    done = subprocess.run(["make", "-n", "-f", str(ROOT / "examples" / "Makefile"), "budget", "DATASET=fashion-mnist",
                           f"OUT={tmp_path}", "DIMCTL=dimctl"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()
    pretrains = [c for c in commands if c.startswith("dimctl pretrain")]
    runs = {c.split("--out ")[1].split()[0].rsplit("/", 1)[1]: c for c in pretrains}
    methods = ("dim-l-infonce", "dim-l-jsd", "dim-g-jsd", "method-ae", "method-vae")
    assert sorted(runs) == sorted([f"{m}-e{e}-s{s}" for m in methods for e in (1, 5, 20) for s in (0, 1, 2)]
                                  + [f"random-e0-s{s}" for s in (0, 1, 2)])
    for name, command in runs.items():
        epochs, seed = name.rsplit("-", 2)[1][1:], name.rsplit("-", 1)[1][1:]
        assert f"--epochs {epochs} --seed {seed} " in command and "--mi-units 512" in command
        assert "--dataset fashion-mnist" in command and "--width" not in command  # the paper's full width
    assert "--preset dim-l --estimator infonce" in runs["dim-l-infonce-e1-s0"]
    assert "--method vae" in runs["method-vae-e20-s2"]
    copies = [c for c in commands if " cp -r " in c]
    assert any(f"cp -r {tmp_path}/budget/dim-g-jsd-e1-s1 {tmp_path}/budget/dim-g-jsd-e5-s1" in c for c in copies)
    assert any(f"cp -r {tmp_path}/budget/method-ae-e5-s2 {tmp_path}/budget/method-ae-e20-s2" in c for c in copies)
    assert len(copies) == 5 * 2 * 3
    assert sum(c.startswith("dimctl probe") and "--classifier svm,mlp" in c for c in commands) == 48
    assert any(c.startswith("dimctl report") and "Accuracy against training budget on fashion-mnist" in c
               for c in commands)
