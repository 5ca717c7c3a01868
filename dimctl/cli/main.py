"""The `dimctl` command: subcommands, and the one place that turns failures into exit codes.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 bad or incompatible artifact,
130 interrupted. Failures print one line on stderr; `--debug` shows the traceback instead.
"""

import os
import signal
import sys
import traceback
from pathlib import Path

import typer

from dimctl import __version__
from dimctl.cli import config_file, extract, inspect, mi, mine, ndm, pretrain, probe, reconstruct
from dimctl.cli import finetune
from dimctl.cli import generate
from dimctl.cli import neighbors, report
from dimctl.cli.common import ReaderGone
from dimctl.errors import DimctlError

app = typer.Typer(
    name="dimctl",
    help="Deep InfoMax as composable steps: pretrain an encoder, extract features, probe them.\n\n"
         "Example: dimctl pretrain --out runs/demo && "
         "dimctl extract runs/demo/encoder.safetensors | dimctl probe",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        print(f"dimctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors (any position)."),
    config: str = typer.Option(None, "--config", metavar="FILE.toml",
                               help="Option defaults from a TOML file, under flags and DIMCTL_<COMMAND>_<OPTION> variables."),
):
    """Options given here apply to every subcommand."""


app.command("pretrain")(pretrain.pretrain)
app.command("extract")(extract.extract)
app.command("probe")(probe.probe)
app.command("inspect")(inspect.inspect)
app.command("mi")(mi.mi)
app.command("mine")(mine.mine)
app.command("ndm")(ndm.ndm)
app.command("reconstruct")(reconstruct.reconstruct)
app.command("finetune")(finetune.finetune)
app.command("neighbors")(neighbors.neighbors)
app.command("report")(report.report)
app.add_typer(generate.app, name="generate")


def _is_click_error(e: Exception) -> bool:
    # Typer may vendor its own copy of click, so match click's exception protocol, not its class.
    return hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)


def _quiet_exit() -> int:
    """The reader stopped early (`… | head -1`): not our failure, and nothing left to say."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def _fail(message: str, code: int) -> int:
    print(f"dimctl: error: {message}", file=sys.stderr, flush=True)
    return code


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so every atomic write removes its temporary file on the way out
    # (pretrain installs its own handler that checkpoints first).
    raise KeyboardInterrupt


def run(argv: list[str]) -> int:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str]) -> int:
    debug = "--debug" in argv or os.environ.get("DIMCTL_DEBUG", "") not in ("", "0")
    args = [a for a in argv if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        args, config_path = config_file.pop_config_flag(args)
        config_path = config_path or os.environ.get("DIMCTL_CONFIG") or None
        default_map = config_file.load_default_map(Path(config_path), command, args) if config_path else None
        rv = command.main(args=args, prog_name="dimctl", standalone_mode=False,
                          default_map=default_map, auto_envvar_prefix="DIMCTL")
        if rv == 130:  # typer turned a KeyboardInterrupt (Ctrl-C or SIGTERM) into an exit code
            return _fail("interrupted", 130)
        return rv if isinstance(rv, int) else 0
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", 130)
    except DimctlError as e:
        if debug:
            traceback.print_exc()
        return _fail(str(e), e.exit_code)
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            return _quiet_exit()
        if debug:
            traceback.print_exc()
        where = f" {e.filename}" if e.filename else ""
        return _fail(f"cannot read or write{where}: {e.strerror or e} (earlier files are intact)", 1)
    except ReaderGone:
        return _quiet_exit()
    except Exception as e:
        if _is_click_error(e):  # bad flag or value, found while parsing
            if not e.format_message():  # `dimctl` alone: the help was the message
                return e.exit_code
            ctx = getattr(e, "ctx", None)
            where = f"dimctl {ctx.info_name}" if ctx is not None and ctx.parent is not None else "dimctl"
            return _fail(f"{e.format_message()} (see `{where} --help`)", e.exit_code)
        # A bug or an unexpected environment: one line, traceback on request.
        if debug:
            traceback.print_exc()
            return 1
        return _fail(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", 1)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
