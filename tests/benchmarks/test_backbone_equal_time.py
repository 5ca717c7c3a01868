"""benchmarks/backbone_equal_time.py: its whole path on digits with tiny settings (calibrate, train
to the step budget with --max-steps, extract, probe), and docs/backbones.md's table is exactly what
it renders from results/backbone_equal_time/accuracy.csv."""

import csv

from dimctl.io.artifacts import load_encoder
from tests.benchmarks import load_benchmark
from tests.cli.helpers import run_here


def study():
    return load_benchmark("backbone_equal_time")


def dimctl_in_process(*args, stdout=None):
    """The study's `dimctl` commands run in this process: its seven child processes would spend
    more time importing torch than computing at these sizes (the launch itself is a plain
    subprocess.run)."""
    done = run_here(*args)
    assert done.returncode == 0, done.stderr.decode()
    if stdout is not None:
        stdout.write(done.stdout.decode())


def test_a_tiny_study_trains_each_encoder_to_its_budget_and_probes_it(tmp_path, capsys, monkeypatch):
    module = study()
    monkeypatch.setattr(module, "run_dimctl", dimctl_in_process)
    module.main(["--archs", "dcgan", "--dataset", "digits", "--minutes", "0.02", "--calibration-steps", "12",
                  "--seeds", "0", "--mlp-epochs", "1", "--pretrain-args", "--width 0.25 --mi-units 32 --fc-dim 32",
                  "--out", str(tmp_path / "study"), "--csv", str(tmp_path / "rows.csv")])
    rows = list(csv.DictReader(open(tmp_path / "rows.csv")))
    trained = [r for r in rows if r["trained"] == "True"]
    steps = int(trained[0]["steps"])
    # The budget is the calibrated speed times the time, and the run stopped there.
    assert abs(steps - 0.02 * 60 * float(trained[0]["calibrated_img_s"]) / 64) <= 0.51  # the rate is rounded in the CSV
    published = load_encoder(tmp_path / "study" / "dcgan-seed0" / "encoder.safetensors")
    assert published.metadata["dimctl.step"] == str(steps)
    assert sorted((r["layer"], r["classifier"]) for r in trained) == sorted(module.TAPS)
    assert {r["trained"] for r in rows} == {"True", "False"} and all(0 <= float(r["accuracy"]) <= 100 for r in rows)
    assert "training done" in capsys.readouterr().out


def test_the_docs_table_is_rendered_from_the_results():
    module = study()
    assert module.render() == module.DOC.read_text()
