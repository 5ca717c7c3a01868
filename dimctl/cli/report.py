"""`dimctl report`: the paper's tables and figures from run folders and JSON-lines results."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from dimctl import progress
from dimctl.cli.options import ReplaceOpt, refuse_to_replace
from dimctl.cli.output import emit, note
from dimctl.errors import UsageError
from dimctl.report.document import ReportOptions, build
from dimctl.io.result_lines import bounded_lines, read_result_lines
from dimctl.report.inputs import collect
from dimctl.report.render import check_target, to_text, write


def report(
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Run folders, folders holding runs (searched below), JSON-lines result files, or - (stdin).")] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", "-o", help="Report file: .md (pictures in NAME_files/ beside it, which is replaced whole, "
                               "before the .md: it may hold only pictures, any other file is refused), .html (one "
                               "self-contained file), .txt (the results tables), or - (the tables on stdout). Repeat "
                               "for several. Default: -.")] = None,
    paper: Annotated[bool, typer.Option(
        "--paper", help="Add the paper's published numbers (Tables 1, 2, 4) beside the measured ones where dataset "
                        "and setting match, marked as the paper's.")] = False,
    sweeps: Annotated[bool, typer.Option(
        "--sweeps/--no-sweeps", help="Draw α/β/γ heat maps when at least 3 runs differ only in those weights.")] = True,
    per_seed: Annotated[bool, typer.Option(
        "--per-seed", help="A row per run. Default: runs that differ only in --seed share one row, mean ± standard "
                           "deviation over the seeds, labelled with them.")] = False,
    title: Annotated[str, typer.Option(help="The report's title.")] = "dimctl report",
    force: ReplaceOpt = False,
):
    """Lay out results the way the paper does: a Table-1-style classification table (runs × layer ×
    classifier), a Table-4-style table (SVM conv/fc/y, MS-SSIM, I(X;Y), NDM), nearest-neighbour
    agreement, any other command's results, and per run its configuration, training curves and
    pictures (reconstructions, neighbours, generator samples); α/β/γ heat maps for a sweep.

    Reads only run folders (config.json, metrics.jsonl, *.safetensors headers, *.png) and JSON lines
    with a "command" key (`dimctl probe --json`, mine, ndm, reconstruct, neighbors, …). Results find
    their run through the sha256 of its encoder.safetensors. Prints the files written, one per line.

    Examples:

      dimctl probe a.h5 b.h5 --json > probe.jsonl \\
          && dimctl report runs/a runs/b probe.jsonl -o report.html

      dimctl report runs/examples/digits -o report.md -o report.html --paper

      dimctl extract runs/a/encoder.safetensors | dimctl probe --json \\
          | dimctl report runs/a -
    """
    sources = inputs or []
    if not sources:
        raise UsageError("give run folders or result files to report on (see `dimctl report --help`)")
    if sources.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    outputs = output or ["-"]
    for target in outputs:
        if target != "-":
            check_target(target)  # refuse a bad name or a folder holding others' files before any work
    refuse_to_replace([t for t in outputs if t != "-"], force, "-o ")
    piped = []
    if "-" in sources:
        if sys.stdin.isatty():
            raise UsageError("- reads result lines from stdin, but stdin is a terminal; pipe `dimctl probe --json` in")
        with progress.activity("report: reading result lines from stdin"):
            piped = read_result_lines(bounded_lines(sys.stdin), "<stdin>")
    with progress.activity("report: reading run folders and results"):
        collected = collect([Path(s) for s in sources if s != "-"], piped)
    for why in collected.skipped:  # the report goes on without them; each is said once
        note(f"report: skipped {why}")
    with progress.activity("report: laying out tables and plots"):
        document = build(collected, ReportOptions(title=title, paper=paper, sweeps=sweeps, pool_seeds=not per_seed))
    for target in outputs:
        if target == "-":
            for line in to_text(document).rstrip("\n").split("\n"):
                emit(line)
            continue
        with progress.activity(f"report: writing {target}"):
            written = write(document, Path(target))
        note(f"report: {target} ({len(document.tables)} tables, {len(document.pictures)} pictures)")
        emit(str(written[0]))
