"""Damaged checkpoints are refused by name (exit 3, one line) rather than resumed with other
randomness: an RNG state deleted or truncated, a file added, and a crafted pickle in the
optimizer state even when the attacker rewrote the recorded digests too."""

import hashlib
import json
import pickle
import shutil

import pytest

from tests.cli.helpers import assert_one_line_error, run_here

RUN = ["--dataset", "digits", "--mi-units", "8", "--width", "0.25", "--fc-dim", "16", "--batch-size", "64",
       "--checkpoint-every", "10"]


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert run_here("pretrain", *RUN, "--epochs", "1", "--out", out).returncode == 0
    return out


def damaged(run, tmp_path, damage):
    copy = tmp_path / damage.__name__
    shutil.copytree(run, copy)
    (latest,) = sorted((copy / "checkpoints").iterdir())[-1:]
    damage(latest)
    return copy


def test_damaged_checkpoints_are_refused_by_name(run, tmp_path):
    def rng_deleted(ckpt):
        (ckpt / "random_states_0.pkl").unlink()

    def rng_truncated(ckpt):
        path = ckpt / "random_states_0.pkl"
        path.write_bytes(path.read_bytes()[:-10])

    def file_added(ckpt):
        (ckpt / "extra.bin").write_bytes(b"x")

    def crafted_pickle(ckpt):
        (ckpt / "optimizer.bin").write_bytes(pickle.dumps(Payload()))
        state = json.loads((ckpt / "train_state.json").read_text())
        state["files"]["optimizer.bin"] = hashlib.sha256((ckpt / "optimizer.bin").read_bytes()).hexdigest()
        (ckpt / "train_state.json").write_text(json.dumps(state))

    expected = {rng_deleted: "random_states_0.pkl is missing", rng_truncated: "random_states_0.pkl changed",
                file_added: "extra.bin was added", crafted_pickle: "is not a loadable checkpoint"}
    for damage, message in expected.items():
        copy = damaged(run, tmp_path, damage)
        result = run_here("pretrain", *RUN, "--epochs", "2", "--out", copy, "--resume")
        assert_one_line_error(result, 3)
        assert message in result.stderr.decode() and "this ran" not in result.stdout.decode(), damage.__name__
    intact = run_here("pretrain", *RUN, "--epochs", "2", "--out", damaged(run, tmp_path, lambda c: None), "--resume")
    assert intact.returncode == 0, intact.stderr.decode()


def test_fewer_epochs_than_the_checkpoint_reached_are_refused_before_anything_changes(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    result = run_here("pretrain", *RUN, "--epochs", "0", "--out", copy, "--resume")
    assert_one_line_error(result, 2)
    assert "is at step 22, past the 0 steps now asked for" in result.stderr.decode()
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def _state(ckpt):
    return json.loads((ckpt / "train_state.json").read_text())


def _write_state(ckpt, state):
    (ckpt / "train_state.json").write_text(json.dumps(state))


def _seal(ckpt, name):
    """Rewrite the recorded digest of ``name`` too, as an attacker who read the format would."""
    state = _state(ckpt)
    state["files"][name] = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    _write_state(ckpt, state)


def _rng_garbage(ckpt):
    (ckpt / "random_states_0.pkl").write_bytes(b"not a pickle at all" * 10)


def _rng_of_wrong_types(ckpt):
    import torch  # a readable file that Accelerate cannot apply (it gives up with only a log line)

    torch.save({"step": 0, "random_state": 5, "numpy_random_seed": 1, "torch_manual_seed": 2},
               ckpt / "random_states_0.pkl")


def _without(key):
    def damage(ckpt):
        state = _state(ckpt)
        del state[key]
        _write_state(ckpt, state)
    return damage


def _with(**changes):
    def damage(ckpt):
        _write_state(ckpt, {**_state(ckpt), **changes})
    return damage


def _raw_state(text):
    def damage(ckpt):
        (ckpt / "train_state.json").write_text(text)
    return damage


def _no_files_and_rng_garbage(ckpt):
    _without("files")(ckpt)
    _rng_garbage(ckpt)


def _rng_garbage_sealed(ckpt):
    _rng_garbage(ckpt)
    _seal(ckpt, "random_states_0.pkl")


def _rng_wrong_types_sealed(ckpt):
    _rng_of_wrong_types(ckpt)
    _seal(ckpt, "random_states_0.pkl")


def _state_deleted(ckpt):
    (ckpt / "train_state.json").unlink()


def _odd_folder(ckpt):
    odd = ckpt.parent / "step_abc"
    shutil.copytree(ckpt, odd)


# Issue 40, group 3: each damaged resume state → exit 3, one line naming what (the newest
# checkpoint, step_00000022, or the odd folder) is wrong.
HOSTILE_STATES = {
    "empty": (_raw_state(""), "train_state.json is not JSON"),
    "an array": (_raw_state("[]"), "a JSON array, not the checkpoint's record"),
    "null": (_raw_state("null"), "JSON null, not the checkpoint's record"),
    "100,000 deep": (_raw_state("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "step abc": (_with(step="abc"), "'step' is 'abc', not a whole number"),
    "step 1e999": (_raw_state('{"step": 1e999, "files": {}}'), "'step' is inf, not a whole number"),
    "step of another folder": (_with(step=10), "'step' is 10, but the folder is the checkpoint of step 22"),
    "files an array": (_with(files=[]), "'files' is not a record of sha256 digests"),
    "no files record": (_without("files"), "no 'files' record"),
    "no files record, RNG garbage": (_no_files_and_rng_garbage, "no 'files' record"),
    "RNG garbage, digest rewritten": (_rng_garbage_sealed, "random_states_0.pkl is not a readable RNG state"),
    "RNG of wrong types, digest rewritten": (_rng_wrong_types_sealed, "is not an RNG state Accelerate could restore"),
    "state deleted": (_state_deleted, "has no train_state.json"),
    "a step_abc folder": (_odd_folder, "step_abc is not a checkpoint folder dimctl writes"),
    "run record of the wrong shape": (_with(run=[]), "'run' is not the run's record"),
}


@pytest.mark.parametrize("case", HOSTILE_STATES)
def test_resume_state_that_is_not_sealed_and_consistent_is_refused_by_name(run, tmp_path, case):
    damage, message = HOSTILE_STATES[case]
    copy = damaged(run, tmp_path, damage)
    before = (copy / "metrics.jsonl").read_bytes()
    result = run_here("pretrain", *RUN, "--epochs", "1", "--out", copy, "--resume")
    assert_one_line_error(result, 3)
    err = result.stderr.decode()
    assert message in err and str(copy / "checkpoints") in err, err
    assert (copy / "metrics.jsonl").read_bytes() == before  # refused before anything was written


def _strict(text):
    def refuse(constant):
        raise ValueError(f"{constant} in a metrics line")
    return json.loads(text, parse_constant=refuse)


def _last_line_elapsed_infinite(path):
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace(f'"elapsed_s": {json.loads(lines[-1])["elapsed_s"]}', '"elapsed_s": Infinity')
    path.write_text("\n".join(lines) + "\n")


def _appended(line):
    def damage(path):
        with open(path, "a") as f:
            f.write(line + "\n")
    return damage


# A line the engine did not write is dropped when a resume cuts the file back to its checkpoint,
# as a line cut short by a kill is; an elapsed_s that is not a finite number counts as absent.
ODD_METRICS = {"deep step": _appended('{"step": ' + "[" * 100_000 + "]" * 100_000 + "}"),
               "deep line": _appended("[" * 100_000), "step Infinity": _appended('{"step": Infinity}'),
               "step 1e999": _appended('{"step": 1e999, "loss": 1}'), "step NaN": _appended('{"step": NaN}'),
               "elapsed_s Infinity": _last_line_elapsed_infinite,
               "not UTF-8": lambda path: path.write_bytes(path.read_bytes() + b'\xff{"step": 3}\n')}


@pytest.mark.parametrize("case", ODD_METRICS)
def test_odd_metrics_lines_are_dropped_when_a_resume_cuts_the_file_back(run, tmp_path, case):
    copy = damaged(run, tmp_path, lambda ckpt: None)
    ODD_METRICS[case](copy / "metrics.jsonl")
    result = run_here("pretrain", *RUN, "--epochs", "2", "--out", copy, "--resume")
    assert result.returncode == 0, result.stderr.decode()
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(text)["step"] for text in lines] == [10, 20, 22, 30, 40, 44]
    assert all(0 <= _strict(text)["elapsed_s"] < 3600 for text in lines[3:])  # the resumed run's own lines


def test_resume_works_with_an_accelerate_that_predates_its_device_lookup(run, tmp_path, monkeypatch):
    # A GPU image's Accelerate 1.15 has no get_torch_accelerator_backend (new in 1.16): importing
    # the training loop failed there. Resuming must work without it.
    import importlib

    import accelerate.utils

    from dimctl.train import checkpoint

    monkeypatch.delattr(accelerate.utils, "get_torch_accelerator_backend")
    importlib.reload(checkpoint)  # imported as under that Accelerate
    copy = damaged(run, tmp_path, lambda ckpt: None)
    result = run_here("pretrain", *RUN, "--epochs", "2", "--out", copy, "--resume")
    assert result.returncode == 0, result.stderr
