"""What a report reads: run folders and JSON-lines result files, and nothing else.

A run folder is a directory holding ``config.json``, ``metrics.jsonl`` or a ``*.safetensors``
artifact, or pictures beside result lines; its ``*.png`` files are its pictures. A result is a JSON object with a ``"command"``
key, one per line, as every evaluation command prints them. Results and runs meet through the
sha256 of an encoder file: a result row names it under ``"encoder"``, a run folder holds it as
``encoder.safetensors``, and a decoder's header names the encoder it decodes.
"""

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dimctl.errors import UsageError
from dimctl.io.artifacts import MADE_BY, bounded_json, json_type, nesting, read_metadata, sha256_of
from dimctl.io.result_lines import read_result_file

RUN_MARKERS = ("config.json", "metrics.jsonl")
NOT_RESULTS = {"config.json", "metrics.jsonl"}  # a run's settings and training curve, not result rows
SKIP_FOLDERS = {"checkpoints"}  # Accelerate's resume state: never part of a report
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # a picture is embedded only if it is one
SERIES_SHOWN = 4  # of a sub-folder's series of pictures (samples every N steps): the first and the last 3
NUMBER = (int, float)
# The shape of config.json that the report reads: top-level entries, then a pretrain run's settings
# (under "config") that name its objective, sweep and budget. Another shape is skipped, noted.
CONFIG_TYPES = {"command": str, "config": dict}
SETTING_TYPES = {"method": str, "preset": (str, type(None)), "estimator": str, "local_critic": str, "coord": str,
                 "dataset": str, "arch": str, "alpha": NUMBER, "beta": NUMBER, "gamma": NUMBER, "epochs": int,
                 "seed": int, "globals": int, "occlude": bool, "cpc_rows": int}
CONFIG_DEPTH = 16  # config.json is three levels deep; a deeper one would overflow the configuration table's walk
FOLDER_DEPTH = 32  # folders below a given one that are searched: run folders sit a few levels down


@dataclass
class RunFolder:
    path: Path
    name: str = ""  # path relative to the folder all runs share; set by collect()
    config: dict | None = None  # config.json, as written
    metrics: list[dict] = field(default_factory=list)  # metrics.jsonl lines
    bad_metric_lines: int = 0  # lines of metrics.jsonl that did not parse (a run killed mid-write)
    pictures: list[Path] = field(default_factory=list)  # *.png here and in sub-folders (samples/), in order
    pictures_left_out: int = 0  # a long series of pictures in a sub-folder shows only its first and last ones
    artifacts: dict[str, Path] = field(default_factory=dict)  # file name → path of each *.safetensors
    kinds: dict[str, str] = field(default_factory=dict)  # file name → its dimctl.kind
    artifact_sha256: dict[str, str] = field(default_factory=dict)  # file name → sha256 of the file
    encoder_sha256: str | None = None  # of the folder's encoder.safetensors
    about: str | None = None  # sha256 of the encoder whose measurements this folder holds (decoders, mine, …)
    about_path: str | None = None  # that encoder's path, when the folder names it
    rows: list[dict] = field(default_factory=list)  # result rows found in the folder's files
    skipped: list[str] = field(default_factory=list)  # "FILE: why" for each file left out of the report

    @property
    def command(self) -> str | None:
        """The command that made the folder, as far as its files tell."""
        if self.config and isinstance(self.config.get("command"), str):
            return self.config["command"]
        commands = [r["command"] for r in self.rows]
        if commands:
            return commands[0]
        kinds = set(self.kinds.values())  # an artifact's kind names the command that made it: a decoder, reconstruct
        return MADE_BY.get(kinds.pop()) if len(kinds) == 1 else None


@dataclass
class Inputs:
    runs: list[RunFolder]
    rows: list[dict]  # every result row once, in the order first read
    skipped: list[str] = field(default_factory=list)  # "FILE: why" for each file or folder left out; the CLI notes them


def is_run_folder(path: Path) -> bool:
    """A folder a command made: its settings, a training curve or an artifact, or pictures beside
    the result lines they belong to (a neighbours grid and its neighbors.jsonl)."""
    if any((path / m).is_file() for m in RUN_MARKERS) or any(path.glob("*.safetensors")):
        return True
    return any(path.glob("*.png")) and (any(path.glob("*.jsonl")) or (path / "result.json").is_file())


def read_run_folder(path: Path) -> RunFolder:
    run = RunFolder(path=path)
    config = path / "config.json"
    if _regular_inside(config, path):
        try:
            run.config = json.loads(config.read_text())
        except RecursionError:
            run.skipped.append(f"{_shown(config)}: nested too deeply to be a run's settings")
        except ValueError as e:
            raise UsageError(f"{config} is not JSON ({e})") from None
        if run.config is not None and (why := _bad_config(run.config)):
            run.config = None
            run.skipped.append(f"{_shown(config)}: {why}")
    metrics = path / "metrics.jsonl"
    if _regular_inside(metrics, path):
        for line in metrics.read_text().splitlines():
            try:
                value = bounded_json(line, CONFIG_DEPTH)
            except ValueError:  # not JSON, or nested too deeply (RecursionError is caught there)
                run.bad_metric_lines += 1
                continue
            if isinstance(value, dict):
                run.metrics.append(value)
    run.pictures, run.pictures_left_out = _pictures(path, run.skipped)
    for artifact in sorted(a for a in path.glob("*.safetensors") if _regular_inside(a, path)):
        metadata, _ = read_metadata(artifact)
        run.artifacts[artifact.name] = artifact
        run.kinds[artifact.name] = metadata.get("dimctl.kind", "unknown")
        run.artifact_sha256[artifact.name] = sha256_of(artifact)
        if artifact.name == "encoder.safetensors":
            run.encoder_sha256 = run.artifact_sha256[artifact.name]
        elif "dimctl.encoder" in metadata:  # a decoder names the encoder whose features it decodes
            try:
                encoder = json.loads(metadata["dimctl.encoder"])
                run.about, run.about_path = encoder.get("sha256"), encoder.get("path")
            except (ValueError, AttributeError):
                pass
    for results in sorted([*path.glob("*.jsonl"), *path.glob("result.json")]):
        if results.name not in NOT_RESULTS and _regular_inside(results, path):
            run.rows.extend(read_result_file(results))
    if run.encoder_sha256 is None and run.about is None:
        about = {r.get("encoder") for r in run.rows if isinstance(r.get("encoder"), str)}
        if len(about) == 1:  # mine's result.json, neighbors.jsonl: every row measures one encoder
            run.about = about.pop()
    return run


def _bad_config(config) -> str | None:
    """Why a run's config.json is not of the shape the report reads (CONFIG_TYPES, SETTING_TYPES), or None."""
    if not isinstance(config, dict):
        return f"holds a JSON {json_type(config)}, not the object of settings dimctl writes"
    settings = config.get("config", {}) if config.get("command") == "pretrain" else {}  # only pretrain's are read
    for where, value, types in (("", config, CONFIG_TYPES), ("config.", settings, SETTING_TYPES)):
        for key, kind in types.items():
            if key in value and (not isinstance(value[key], kind) or isinstance(value[key], bool) and kind is not bool):
                return f"{where}{key} is a JSON {json_type(value[key])}, not what dimctl writes"
    if nesting(config) > CONFIG_DEPTH:
        return f"nested more than {CONFIG_DEPTH} levels deep, not a run's settings"
    return None


def _shown(path: Path) -> str:
    """A path as a note prints it: quoted with escapes when it holds a newline (one note stays one line)."""
    name = str(path)
    return name if name.isprintable() else repr(name)


def _natural(path: Path) -> list:
    """step_20.png before step_100.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def _pictures(run_dir: Path, skipped: list[str]) -> tuple[list[Path], int]:
    """The run's own PNGs, then those of its sub-folders that are not runs themselves (a generator's
    samples/step_N.png); of a long series, the first and the last few. A picture too large to
    decode is left out, its reason added to ``skipped``."""
    def shown(p: Path) -> bool:
        return _regular_inside(p, run_dir) and _is_png(p) and _small_enough(p, skipped)

    pictures = [p for p in sorted(run_dir.glob("*.png"), key=_natural) if shown(p)]
    left_out = 0
    for here, subfolders, names in os.walk(run_dir):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIP_FOLDERS and not d.startswith("."))
        _bound_depth(run_dir, here, subfolders, skipped)
        here = Path(here)
        if here == run_dir:
            continue
        if is_run_folder(here):
            subfolders[:] = []
            continue
        series = [p for p in sorted(here.glob("*.png"), key=_natural) if shown(p)]
        if len(series) > SERIES_SHOWN:
            left_out += len(series) - SERIES_SHOWN
            series = series[:1] + series[1 - SERIES_SHOWN:]
        pictures += series
    return pictures, left_out


def _regular_inside(path: Path, root: Path) -> bool:
    """A regular file (never a FIFO or device, which would block or never end) that stays inside
    ``root`` once links are resolved: a report reads only what it was given."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _is_png(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE


def _small_enough(path: Path, skipped: list[str]) -> bool:
    """Whether a PNG's header (IHDR, its first chunk) claims no more pixels than Pillow's limit, the
    one image readers use (data/decode.py): a 30,000 × 30,000 picture of a few kB is a
    decompression bomb, refused before anything decodes it."""
    from PIL import Image

    with open(path, "rb") as f:
        head = f.read(24)
    if head[12:16] != b"IHDR":
        return True  # not a well-formed PNG: Pillow refuses it unread, and the report embeds its bytes as they are
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        skipped.append(f"{_shown(path)}: its header claims {width}×{height} pixels, over the {limit} an image may "
                       f"have (a decompression bomb?)")
        return False
    return True


def _bound_depth(root: Path, here: str, subfolders: list[str], skipped: list[str]) -> None:
    """Stop os.walk FOLDER_DEPTH levels below ``root``: a deeper tree (1,500 levels) would overflow
    its recursion, and no command writes runs that deep. Noted once per folder cut off."""
    if subfolders and len(Path(here).relative_to(root).parts) >= FOLDER_DEPTH:
        skipped.append(f"{_shown(Path(here))}: more than {FOLDER_DEPTH} folder levels below {_shown(root)}; "
                       f"its sub-folders are not searched")
        subfolders[:] = []


def _walk(folder: Path, skipped: list[str]) -> tuple[list[Path], list[Path]]:
    """Run folders and loose result files below ``folder`` (itself included); folders left
    unsearched are added to ``skipped``."""
    runs, files = [], []
    for here, subfolders, names in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIP_FOLDERS and not d.startswith("."))
        _bound_depth(folder, here, subfolders, skipped)
        here = Path(here)
        if is_run_folder(here):
            runs.append(here)  # its result files are read with it
        else:
            files.extend(here / n for n in sorted(names)
                         if n.endswith(".jsonl") and not n.startswith(".") and _regular_inside(here / n, folder))
    return runs, files


def collect(paths: list[Path], extra_rows: list[dict] | None = None) -> Inputs:
    """Read every run folder and result file under ``paths``; result rows read elsewhere join them."""
    run_paths: list[Path] = []
    files: list[Path] = []
    skipped: list[str] = []
    for path in paths:
        if path.is_dir():
            found_runs, found_files = _walk(path, skipped)
            run_paths += found_runs
            files += found_files
        elif path.is_file() and path.suffix == ".safetensors":
            run_paths.append(path.parent)  # an artifact stands for the run folder that holds it
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    run_paths = list(dict.fromkeys(p.resolve() for p in run_paths))
    runs = [read_run_folder(p) for p in run_paths]
    _name_runs(runs)

    rows: list[dict] = []
    seen: set[str] = set()

    def add(row: dict) -> None:
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            rows.append(row)

    for path in dict.fromkeys(files):  # given by name (a FIFO too: `<(dimctl probe --json)`) or found inside a root
        for row in read_result_file(path):
            add(row)
    for row in extra_rows or []:
        add(row)
    given = set(seen)  # a result given as lines and also found in a run folder counts once
    for run in runs:
        seen = set(given)  # but two folders holding the same lines are two runs of the command
        for row in run.rows:
            add(row)
    if not runs and not rows:
        raise UsageError(f"found no run folders and no result lines in {', '.join(map(str, paths)) or 'the input'}")
    return Inputs(runs, rows, skipped + [why for run in runs for why in run.skipped])


def _name_runs(runs: list[RunFolder]) -> None:
    """Name each run by its path below the folder all runs share (one run: its folder's name)."""
    if not runs:
        return
    common = Path(os.path.commonpath([r.path.parent for r in runs]))
    for run in runs:
        run.name = run.path.relative_to(common).as_posix()
    runs.sort(key=lambda r: r.name)
