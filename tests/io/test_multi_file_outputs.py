"""Outputs of several files are put in place whole or not at all (`generate sample --out DIR`, a
Markdown report's NAME_files/), and the temporaries a killed command leaves are removed by the
next write into their folder — never a live writer's, never a file that only looks like one."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import dimctl.cli.generate as generate_cli
import dimctl.io.atomic as atomic
import dimctl.report.render as render
from dimctl.io.atomic import atomic_folder, atomic_path, remove_stale_temporaries
from dimctl.report.document import Document, Picture
from dimctl.report.inputs import PNG_SIGNATURE
from tests.cli.helpers import assert_one_line_error, run_here


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Path:
    """A random, tiny generator: what `generate sample` reads, without the cost of training one."""
    import torch

    from dimctl.io.artifacts import save_generator
    from dimctl.models.generators import GeneratorConfig, build_generator

    torch.manual_seed(0)
    config = GeneratorConfig(image_size=32, channels=1, z_dim=16, width=4)
    path = tmp_path_factory.mktemp("generator") / "generator.safetensors"
    return save_generator(path, build_generator(config).eval(), config, {"name": "digits"}, step=0)


def snapshot(folder: Path) -> dict:
    """Every entry below ``folder``: its bytes (None for a folder) and mode, and the folder's own."""
    entries = {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes(), p.stat().st_mode)
               for p in sorted(folder.rglob("*"))}
    return {".": folder.stat().st_mode, **entries}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def sample(generator, out: Path, n: int, *extra):
    return run_here("generate", "sample", generator, "-n", n, "--out", out, *extra)


def failing_after(real, k: int, error: BaseException):
    """``real``, which raises ``error`` instead of making its call number k+1."""
    calls = []

    def writer(*args, **kwargs):
        if len(calls) == k:
            raise error
        calls.append(args)
        return real(*args, **kwargs)

    return writer


def watched(real, before_each):
    """``real``, calling ``before_each()`` before each call."""
    def writer(*args, **kwargs):
        before_each()
        return real(*args, **kwargs)

    return writer


def old_samples(folder: Path) -> dict:
    """An earlier set of 3 samples (not real PNGs: what matters is that every byte stays)."""
    folder.mkdir()
    for i in range(3):
        (folder / f"sample_{i:06d}.png").write_bytes(b"old %d" % i)
    (folder / ".DS_Store").write_bytes(b"a file browser's")  # litter, replaced with the set
    folder.chmod(0o750)
    return snapshot(folder)


# --- generate sample --out DIR ------------------------------------------------------------------

@pytest.mark.parametrize("error, code", [(OSError(28, "No space left on device"), 1), (KeyboardInterrupt(), 130)])
def test_a_failure_midway_leaves_no_folder_and_no_temporary(generator, tmp_path, monkeypatch, error, code):
    monkeypatch.setattr(generate_cli, "save_png", failing_after(generate_cli.save_png, 2, error))
    assert_one_line_error(sample(generator, tmp_path / "imgs", 5), code)
    assert not (tmp_path / "imgs").exists() and temporaries(tmp_path) == []


@pytest.mark.parametrize("error, code", [(OSError(28, "No space left on device"), 1), (KeyboardInterrupt(), 130)])
def test_a_failure_midway_leaves_the_old_set_byte_identical(generator, tmp_path, monkeypatch, error, code):
    out = tmp_path / "imgs"
    before = old_samples(out)
    monkeypatch.setattr(generate_cli, "save_png", failing_after(generate_cli.save_png, 2, error))
    assert_one_line_error(sample(generator, out, 5, "--force"), code)
    assert snapshot(out) == before and temporaries(tmp_path) == []


def test_force_replaces_the_set_whole_and_readers_never_see_a_mix(generator, tmp_path, monkeypatch):
    out = tmp_path / "imgs"
    before = old_samples(out)
    seen = []  # the published folder as a reader finds it while the new set is being written
    monkeypatch.setattr(generate_cli, "save_png", watched(generate_cli.save_png, lambda: seen.append(snapshot(out))))
    assert sample(generator, out, 2, "--force").returncode == 0
    assert seen == [before, before]
    after = snapshot(out)
    assert sorted(after) == [".", "sample_000000.png", "sample_000001.png"]
    assert after["."] == before["."]  # the folder's mode is kept
    assert all(content.startswith(PNG_SIGNATURE) for content, _ in list(after.values())[1:])
    assert temporaries(tmp_path) == []


def test_a_folder_holding_other_files_is_refused_before_any_work(generator, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sample_000000.png").write_bytes(b"old")
    (out / "notes.txt").write_text("keep me")
    (out / "sub").mkdir()
    before = snapshot(out)
    for extra in ((), ("--force",)):
        assert_one_line_error(sample(generator, out, 2, *extra), 2)
    assert "notes.txt" in run_here("generate", "sample", generator, "--out", out, "--force").stderr.decode()
    assert snapshot(out) == before and temporaries(tmp_path) == []


def test_a_file_added_while_sampling_is_not_deleted(generator, tmp_path, monkeypatch):
    out = tmp_path / "imgs"
    old_samples(out)

    def user_adds_a_file():
        (out / "added.txt").write_text("mine")

    monkeypatch.setattr(generate_cli, "save_png", watched(generate_cli.save_png, user_adds_a_file))
    assert_one_line_error(sample(generator, out, 2, "--force"), 2)
    assert (out / "added.txt").read_text() == "mine" and (out / "sample_000002.png").read_bytes() == b"old 2"
    assert temporaries(tmp_path) == []


def test_the_working_folder_and_a_link_to_a_folder(generator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for here in (".", tmp_path, tmp_path.parent):
        result = sample(generator, here, 2, "--force")
        assert_one_line_error(result, 2)
        assert "working folder" in result.stderr.decode()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert sample(generator, tmp_path / "link", 2).returncode == 0
    assert (tmp_path / "link").is_symlink() and len(list((tmp_path / "real").glob("sample_*.png"))) == 2


# --- report: NAME.md and NAME_files/ ------------------------------------------------------------

def document(*names: str) -> Document:
    doc = Document("t")
    for name in names:
        doc.add(Picture(PNG_SIGNATURE + name.encode(), name, name))
    return doc


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("earlier", [False, True])
def test_a_report_failing_while_writing_pictures_leaves_the_old_md_and_folder(tmp_path, monkeypatch, error, earlier):
    md = tmp_path / "r.md"
    if earlier:
        render.write(document("old"), md)
    before = {p.name: snapshot(p) if p.is_dir() else p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(render, "write_bytes", failing_after(render.write_bytes, 1, error))
    with pytest.raises(type(error)):
        render.write(document("a", "b", "c"), md)
    assert {p.name: snapshot(p) if p.is_dir() else p.read_bytes() for p in tmp_path.iterdir()} == before
    assert sorted(before) == (["r.md", "r_files"] if earlier else [])


def test_the_pictures_are_in_place_before_the_md_and_replace_the_old_ones_whole(tmp_path, monkeypatch):
    md = tmp_path / "r.md"
    render.write(document("old", "kept"), md)
    published = []
    real_replace = os.replace

    def spy(source, target, *args, **kwargs):  # what a reader finds in r_files/ as the .md appears
        if Path(target) == md:
            published.append(sorted(p.name for p in (tmp_path / "r_files").iterdir()))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", spy)
    render.write(document("kept", "new"), md)
    assert published == [["kept.png", "new.png"]]
    assert (tmp_path / "r_files" / "new.png").read_bytes() == PNG_SIGNATURE + b"new"
    assert "](r_files/new.png)" in md.read_text() and temporaries(tmp_path) == []


def test_a_report_folder_holding_other_files_is_refused(tmp_path):
    assets = tmp_path / "r_files"
    assets.mkdir()
    (assets / "notes.txt").write_text("keep me")
    before = snapshot(assets)
    result = run_here("report", tmp_path / "no-such-run", "-o", tmp_path / "r.md", "--force")
    assert_one_line_error(result, 2)
    assert "notes.txt" in result.stderr.decode()
    assert snapshot(assets) == before and not (tmp_path / "r.md").exists()


# --- stale temporaries --------------------------------------------------------------------------

def dead_pid() -> int:
    """The PID of a process that has exited and been reaped (no kill timing involved)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def temporary_name(target: str, pid: int) -> str:
    """The name ``atomic_path`` gives a temporary for ``target``, as if process ``pid`` wrote it."""
    with tempfile.TemporaryDirectory() as scratch, atomic_path(Path(scratch) / target) as tmp:
        match = atomic.TEMPORARY.fullmatch(tmp.name)
    assert match["pid"] == str(os.getpid())
    return tmp.name[:match.start("pid")] + str(pid) + tmp.name[match.end("pid"):]


def of_another_host(name: str) -> str:
    match = atomic.TEMPORARY.fullmatch(name)
    other = "00000000" if match["host"] != "00000000" else "ffffffff"
    return name[:match.start("host")] + other + name[match.end("host"):]


def test_temporaries_carry_the_writers_pid(tmp_path):
    with atomic_folder(tmp_path / "set") as folder:
        match = atomic.TEMPORARY.fullmatch(folder.name)
        assert match and match["pid"] == str(os.getpid()) and folder.parent == tmp_path
    with atomic_path("/dev/null") as through:  # written through a temporary in the system's folder
        assert atomic.TEMPORARY.fullmatch(through.name)["pid"] == str(os.getpid())


def test_only_dead_writers_temporaries_on_this_host_are_removed(tmp_path):
    dead = dead_pid()
    live = [temporary_name("live.h5", os.getppid()),  # another command, writing now
            temporary_name("own.h5", os.getpid())]
    dead_file, dead_folder = temporary_name("a.h5", dead), temporary_name("imgs", dead)
    look_alikes = ["notes.tmp", ".a.h5.tmp", f".a.h5.{dead}.tmp",
                   ".a.h5.abcdefgh.tmp",  # an older dimctl's name, without its writer
                   dead_file + ".bak", dead_file.replace(".tmp", ".TMP"),
                   of_another_host(dead_file)]  # a PID of another machine sharing the folder says nothing here
    for name in [*live, dead_file, *look_alikes]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / dead_folder).mkdir()
    (tmp_path / dead_folder / "sample_000000.png").write_bytes(b"x")
    link = temporary_name("l.h5", dead)  # dimctl makes no links: one with its name is someone else's
    (tmp_path / link).symlink_to(tmp_path / "notes.tmp")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([dead_file, dead_folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*live, *look_alikes, link])


def test_the_next_command_writing_into_the_folder_removes_a_killed_ones_temporaries(generator, tmp_path):
    dead = dead_pid()
    stale_folder = tmp_path / temporary_name("imgs", dead)
    stale_folder.mkdir()
    (stale_folder / "sample_000000.png").write_bytes(b"half")
    stale_file = tmp_path / temporary_name("grid.png", dead)
    stale_file.write_bytes(b"half")
    live = tmp_path / temporary_name("other.h5", os.getppid())
    live.write_bytes(b"being written")
    assert sample(generator, tmp_path / "imgs", 2).returncode == 0
    assert temporaries(tmp_path) == [live.name]


def test_a_name_near_the_length_limit_still_gets_a_temporary(tmp_path):
    target = tmp_path / ("é" * 120 + ".h5")  # 243 bytes: its temporary, named in full, would pass 255
    atomic.write_bytes(target, b"x")
    assert target.read_bytes() == b"x" and temporaries(tmp_path) == []
