"""The tables' cells against the JSON lines and run folders real (tiny) commands wrote."""

import json
import shutil
from statistics import mean, stdev

import pytest

from dimctl.io.artifacts import sha256_of
from dimctl.report.inputs import collect
from dimctl.report.measures import group
from dimctl.report.tables import (classification_table, config_table, neighbors_table, other_results_tables,
                                  representation_table, training_table)
from tests.report.tiny import dimctl, lines


@pytest.fixture(scope="module")
def models(made):
    everything = [*made.runs.values(), made.results, made.root / "mine-dim-l", made.root / "rec-dim-l",
                  made.root / "nn-dim-l"]
    return group(collect(everything)).models


def by_label(models, label):
    return next(m for m in models if m.label == label)


def test_results_join_their_runs_by_the_encoder_sha256(made, models):
    assert [m.label for m in models] == ["dim-g", "dim-l"]
    dim_l = by_label(models, "dim-l")
    assert dim_l.sha256 == sha256_of(made.runs["dim-l"] / "encoder.safetensors")
    assert sorted(r.path.name for r in dim_l.attached) == ["mine-dim-l", "nn-dim-l", "rec-dim-l"]
    assert {r["command"] for r in dim_l.rows} == {"probe", "ndm", "mine", "reconstruct", "neighbors"}
    assert {r["command"] for r in by_label(models, "dim-g").rows} == {"probe"}


def test_table1_cells_are_the_probe_accuracies(made, models):
    table = classification_table(models)
    # The fixture's mlp ran 3 epochs, not the default 50: its columns say so.
    assert table.header == ["run", "objective", "conv svm", "conv mlp epochs=3", "fc svm", "fc mlp epochs=3", "y svm",
                            "y mlp epochs=3"]
    assert table.column("run") == ["dim-g", "dim-l"]
    assert table.column("objective") == ["DIM(G) JSD", "DIM(L) JSD"]
    assert "digits" in table.title
    for row in made.probe:
        label = "dim-l" if row["features"].endswith("dim-l.h5") else "dim-g"
        classifier = "mlp epochs=3" if row["classifier"] == "mlp" else row["classifier"]
        assert table.cell(label, f"{row['layer']} {classifier}") == f"{100 * row['accuracy']:.2f}"
    assert len(made.probe) == 12  # 2 files × 3 layers × 2 classifiers: every one has its cell


def test_table4_cells_are_the_estimates(made, models):
    table = representation_table(models)
    assert table.header == ["run", "objective", "SVM conv", "SVM fc", "SVM y", "MS-SSIM", "I(X;Y)", "NDM"]
    assert table.column("run") == ["dim-l"]  # dim-g has no MS-SSIM, I(X;Y) or NDM: it is in Table 1 only
    (ndm,), (mine,), (rec,) = made.ndm, made.mine, made.reconstruct
    assert table.cell("dim-l", "NDM") == f"{ndm['ndm']:.3f} ± {ndm['stderr']:.3f}"
    assert table.cell("dim-l", "I(X;Y)") == f"{mine['estimate']:.2f} ± {mine['stderr']:.2f}"
    assert table.cell("dim-l", "MS-SSIM") == f"{rec['ms_ssim']:.3f}"
    for row in made.probe:
        if row["features"].endswith("dim-l.h5") and row["classifier"] == "svm":
            assert table.cell("dim-l", f"SVM {row['layer']}") == f"{100 * row['accuracy']:.2f}"


def test_a_narrow_decoders_ms_ssim_is_a_column_of_its_own(made, tmp_path):
    (rec,) = made.reconstruct
    (tmp_path / "narrow.jsonl").write_text(json.dumps(dict(rec, ms_ssim=0.25, decoder_width=0.25)) + "\n")
    models = group(collect([made.runs["dim-l"], made.root / "rec-dim-l", tmp_path / "narrow.jsonl"])).models
    table = representation_table(models)
    assert table.cell("dim-l", "MS-SSIM") == f"{rec['ms_ssim']:.3f}"  # not averaged with the narrow one
    assert table.cell("dim-l", "MS-SSIM (y, decoder width 0.25)") == "0.250"


def test_repeated_results_show_mean_and_spread(made, tmp_path):
    again = [dict(r, accuracy=round(r["accuracy"] - 0.01, 6)) for r in made.probe]
    (tmp_path / "again.jsonl").write_text("".join(json.dumps(r) + "\n" for r in again))
    models = group(collect([made.runs["dim-l"], made.results / "probe.jsonl", tmp_path / "again.jsonl"])).models
    table = classification_table(models)
    first = next(r for r in made.probe if r["features"].endswith("dim-l.h5") and r["layer"] == "y" and r["classifier"] == "svm")
    values = [first["accuracy"], round(first["accuracy"] - 0.01, 6)]
    assert table.cell("dim-l", "y svm") == f"{100 * mean(values):.2f} ± {100 * stdev(values):.2f} (n=2)"
    assert any("mean ± standard deviation" in n for n in table.notes)


def test_results_without_their_run_are_named_by_their_feature_file(made):
    models = group(collect([made.results / "probe.jsonl"])).models
    assert [m.label for m in models] == ["dim-g", "dim-l"]  # the .h5 stems
    assert classification_table(models).column("objective") == ["-", "-"]


def test_neighbours_table_counts_same_class_neighbours(made, models):
    table = neighbors_table(models)
    assert table.rows[0][:7] == ["dim-l", "nn-dim-l", "digits", "sigmoid(y)", "l1", "4", "10"]
    same = sum(sum(n == r["class"] for n in r["neighbor_labels"]) for r in made.neighbors) / 40
    assert table.cell("dim-l", "same class (%)") == f"{100 * same:.1f}"


def test_neighbours_in_two_folders_are_two_rows(made, tmp_path):
    """The same neighbours written twice (identical lines) are still two runs of the command."""
    copy = tmp_path / "nn-again"
    shutil.copytree(made.root / "nn-dim-l", copy)
    models = group(collect([made.runs["dim-l"], made.root / "nn-dim-l", copy])).models
    rows = neighbors_table(models).rows
    assert sorted(r[1].split("/")[-1] for r in rows) == ["nn-again", "nn-dim-l"]
    assert all(r[6] == "10" for r in rows)


def test_other_commands_get_a_table_of_their_scalar_keys(made, tmp_path):
    sha = sha256_of(made.runs["dim-l"] / "encoder.safetensors")
    rows = [{"command": "generate score", "metric": "fd_dim", "value": 12.3456, "samples": 1000, "per_class": [1, 2],
             "generator": "f" * 64, "encoder": sha},
            {"command": "generate score", "metric": "fd_dim", "value": 3.0, "samples": 10, "generator": sha}]
    (tmp_path / "score.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    grouped = group(collect([made.runs["dim-l"], tmp_path / "score.jsonl"]))
    (table,) = other_results_tables(grouped.models, grouped.loose_rows, grouped.artifacts)
    assert table.title == "Results of `dimctl generate score`"
    assert table.header == ["encoder", "metric", "value", "samples", "generator"]  # no list column
    # The encoder column names the run; a sha256 of a given run's file shows as that file; others are cut short.
    assert table.rows == [["dim-l", "fd_dim", "12.35", "1000", "ffffffffffff…"],
                          ["-", "fd_dim", "3", "10", "dim-l/encoder.safetensors"]]


def test_config_and_training_tables_show_the_run_files(made, models):
    run = by_label(models, "dim-l").run
    config = json.loads((made.runs["dim-l"] / "config.json").read_text())
    table = config_table(run.config, "config")
    assert dict(table.rows)["config.mi_units"] == "16" and dict(table.rows)["config.preset"] == "dim-l"
    assert len(table.rows) >= len(config["config"])  # every setting, whatever keys pretrain writes
    metrics = [json.loads(line) for line in (made.runs["dim-l"] / "metrics.jsonl").read_text().splitlines()]
    training = training_table(run.metrics, "training")
    rows = {r[0]: r for r in training.rows}
    assert rows["loss"][2] == f"{metrics[-1]['loss']:.4g}" and rows["loss"][1] == f"{metrics[0]['loss']:.4g}"
    assert rows["images_per_s"][5] == str(len(metrics))


def _as_cifar10(run_dir, target):
    """A copy of a run that says it trained on CIFAR10 (to exercise the paper's columns offline)."""
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((target / "config.json").read_text())
    config["config"]["dataset"] = "cifar10"
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_paper_columns_only_where_the_setting_matches(made, tmp_path):
    run = _as_cifar10(made.runs["dim-l"], tmp_path / "dim-l")
    sha = sha256_of(run / "encoder.safetensors")
    rows = [dict(r, dataset="cifar10") for r in made.probe if r["encoder"] == sha]
    rows += [dict(r, dataset="cifar10") for r in made.ndm]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = group(collect([run, tmp_path / "rows.jsonl"])).models

    table = classification_table(models, with_paper=True)
    # The paper's probe is the mlp: DIM(L) JSD on CIFAR10 is 73.25 / 73.62 / 66.96 (Table 1, checked).
    assert table.cell("dim-l", "conv mlp epochs=3 (paper)") == "73.25"
    assert table.cell("dim-l", "y mlp epochs=3 (paper)") == "66.96"
    assert "conv svm (paper)" not in table.header
    assert any("not measurements" in n for n in table.notes)
    t4 = representation_table(models, with_paper=True)
    assert t4.cell("dim-l", "NDM (paper)") == "9.38†"  # recalled, and marked so
    assert t4.cell("dim-l", "SVM y (paper)") == "49.62†"
    assert classification_table(models).header.count("conv mlp epochs=3") == 1  # no paper columns unless asked

    # Untrained, or another architecture: no paper number applies.
    config = json.loads((run / "config.json").read_text())
    config["config"]["epochs"] = 0
    (run / "config.json").write_text(json.dumps(config))
    models = group(collect([run, tmp_path / "rows.jsonl"])).models
    assert not any("paper" in h for h in classification_table(models, with_paper=True).header)
    config["config"].update(epochs=1, occlude=True)  # a DIM-family option the paper's Table 1 did not use
    (run / "config.json").write_text(json.dumps(config))
    table = classification_table(group(collect([run, tmp_path / "rows.jsonl"])).models, with_paper=True)
    assert not any("paper" in h for h in table.header) and table.column("objective") == ["DIM(L) JSD +occlusion"]


def test_probes_of_another_protocol_are_another_column_never_one_pooled_cell(made, tmp_path):
    """k=10 majority and k=200 distance-weighted kNN on the same features are two numbers, not one
    mean ± spread (issue 36); so are the mlp's probe seeds 0 and 1."""
    features = made.root / "dim-l.h5"
    knn = ["--layer", "y", "--classifier", "knn", "--json"]
    rows = lines(dimctl("probe", features, *knn))
    rows += lines(dimctl("probe", features, *knn, "--knn-k", "200", "--knn-weights", "distance"))
    mlp = ["--layer", "y", "--classifier", "mlp", "--mlp-epochs", "2", "--json"]
    rows += lines(dimctl("probe", features, *mlp)) + lines(dimctl("probe", features, *mlp, "--seed", "1"))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = classification_table(group(collect([made.runs["dim-l"], tmp_path / "rows.jsonl"])).models)

    columns = ["y knn", "y knn k=200 weights=distance T=0.07", "y mlp epochs=2", "y mlp epochs=2 probe-seed=1"]
    assert table.header == ["run", "objective", *columns[2:], *columns[:2]]  # mlp before knn, as always
    for column, row in zip(columns, rows):
        assert table.cell("dim-l", column) == f"{100 * row['accuracy']:.2f}"
    assert rows[0]["accuracy"] != rows[1]["accuracy"]  # the two knn protocols disagree: pooling them would show a spread
    assert rows[2]["accuracy"] != rows[3]["accuracy"]
    assert any("knn = cosine k-nearest neighbours" in n and "majority vote of the 10 nearest" in n for n in table.notes)
    assert any("probe-seed = `dimctl probe --seed`" in n for n in table.notes)
