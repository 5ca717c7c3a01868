"""The `dimctl` command: subcommands, and the one place that turns failures into exit codes.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 bad or incompatible artifact,
130 interrupted. Failures print one line on stderr; `--debug` shows the traceback instead.
"""

import contextlib
import difflib
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

import typer
import typer.core

from dimctl import __version__
from dimctl.cli import config_file, deprecations
from dimctl.cli.output import ReaderGone
from dimctl.errors import DimctlError, UsageError
from dimctl.io.run_lock import release_run_locks
from dimctl.text import one_line

# Every subcommand: name → (module, attribute, one-line help for `dimctl --help`). A module is imported
# only when its command runs or shows its own help, so `dimctl --version` and `dimctl probe --help`
# do not pay for torch. The attribute is a command function or a Typer app (a group of subcommands).
# tests/cli/test_startup.py checks each help line against the command's own docstring.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("dimctl.cli.pretrain", "pretrain",
                 "Pretrain an encoder with Deep InfoMax (or a comparison method); print the published encoder's path."),
    "extract": ("dimctl.cli.extract", "extract", "Extract features of the train and test splits into one HDF5 file."),
    "probe": ("dimctl.cli.probe", "probe", "Train classifiers on the train split's features and report test accuracy."),
    "inspect": ("dimctl.cli.inspect", "inspect", "Print an artifact's metadata, shapes and sha256 as one JSON object."),
    "export": ("dimctl.cli.export", "export",
               "Export an encoder as ONNX, TorchScript or a Hugging Face Hub folder, with its preprocessing."),
    "mi": ("dimctl.cli.mi", "mi", "Estimate I(X; Y) in nats between two arrays of a feature file; one JSON line."),
    "mine": ("dimctl.cli.mine", "mine",
             "Estimate I(X; Y) in nats between images X and the encoder's frozen Y, as MINE does; one JSON line."),
    "ndm": ("dimctl.cli.ndm", "ndm",
            "Estimate KL(joint ‖ product of marginals) of a representation's dimensions, in nats; one JSON line."),
    "reconstruct": ("dimctl.cli.reconstruct", "reconstruct",
                    "Train a decoder on a frozen encoder's layer; score its test reconstructions by MS-SSIM."),
    "finetune": ("dimctl.cli.finetune", "finetune",
                 "Fine-tune a pretrained encoder with labels (the paper's semi-supervised setting, Table 2 \"SS\")."),
    "neighbors": ("dimctl.cli.neighbors", "neighbors",
                  "Nearest neighbours in representation space (paper App. A.4): for one random test image of each "
                  "class, the -n test images closest to it under --distance."),
    "report": ("dimctl.cli.report", "report",
               "Lay out results the way the paper does: a Table-1-style classification table (runs × layer × "
               "classifier), a Table-4-style table (SVM conv/fc/y, MS-SSIM, I(X;Y), NDM), nearest-neighbour "
               "agreement, any other command's results, and per run its configuration, training curves and "
               "pictures (reconstructions, neighbours, generator samples); α/β/γ heat maps for a sweep."),
    "generate": ("dimctl.cli.generate", "app",
                 "Train an image generator by implicit prior matching (paper App. A.8) or as a GAN, sample it, score it."),
}


@contextlib.contextmanager
def signals_held():
    """SIGINT/SIGTERM during a command's imports are acted on once the imports are done. Raised
    inside a library's module body, the KeyboardInterrupt could be swallowed (the command then ran
    to the end) or leave a module half-initialised (numpy recursed until RecursionError)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread handles signals
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        raise KeyboardInterrupt


def load_command(name: str):
    """The click command (or group, for a Typer app) of a subcommand in COMMANDS; imports its module."""
    module, attribute, _ = COMMANDS[name]
    with signals_held():
        target = getattr(importlib.import_module(module), attribute)
    from dimctl.cli.settings_options import derive_settings_again

    for function in [c.callback for c in target.registered_commands] if isinstance(target, typer.Typer) else [target]:
        derive_settings_again(function)
    if isinstance(target, typer.Typer):  # a group of subcommands, as app.add_typer would add it
        _build_with_help_as_written(target)
        command = typer.main.get_group(target)
    else:  # a command function: a one-command Typer app converts to a plain command
        one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        one.command(name, cls=Command)(target)
        command = typer.main.get_command(one)
    command.name = name
    for leaf_name, leaf in ([(name, command)] if not hasattr(command, "commands") else
                            [(f"{name} {sub}", c) for sub, c in command.commands.items()]):
        if leaf.callback is not None and not getattr(leaf.callback, "_with_threads", False):
            leaf.callback = _with_threads_and_progress(leaf_name, leaf.callback)
    name_environment_variables(command, [name])
    from dimctl.cli.numbers import check_numbers  # here: `dimctl --version` imports no more than it needs

    check_numbers(command)
    return command


# What run() learnt before the command was parsed: --threads, and the CPU sample begun at start-up.
_startup: dict = {}


def _with_threads_and_progress(name: str, callback):
    """The command's function, run with its thread count applied (dimctl/threads.py) and its
    progress shown (cli/progress.py). The count is chosen here, after the imports and the parsing,
    so the start-up sample saw what else the machine was doing meanwhile; whatever a command
    changed is put back afterwards, so commands called in one process (tests, the API) stay apart."""
    import functools

    @functools.wraps(callback)
    def run_command(*args, **kwargs):
        from dimctl import threads
        from dimctl.cli.progress import CommandProgress

        try:
            choice = threads.choose(_startup.get("threads"), sample=_startup.get("sample"))
        except ValueError as e:
            raise UsageError(str(e)) from None
        saved = {k: os.environ.get(k) for k in threads.THREAD_VARIABLES}
        torch = sys.modules.get("torch")
        saved_torch = torch.get_num_threads() if torch is not None else None
        limits = threads.apply(choice)
        try:
            with CommandProgress(name, choice):
                return callback(*args, **kwargs)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if saved_torch is not None:
                torch.set_num_threads(saved_torch)
            if limits is not None:
                limits.restore_original_limits()
            threads.forget()

    run_command._with_threads = True
    return run_command


def pop_threads_flag(args: list[str]) -> tuple[list[str], int | None]:
    """Remove `--threads N` / `--threads=N` from anywhere in args (like --debug, it applies to every command)."""
    from dimctl.threads import parse_threads

    out, value, i = [], None, 0
    while i < len(args):
        a = args[i]
        if a == "--threads" or a.startswith("--threads="):
            if a == "--threads":
                if i + 1 >= len(args):
                    raise UsageError("--threads needs a number of threads")
                text, i = args[i + 1], i + 2
            else:
                text, i = a.split("=", 1)[1], i + 1
            if text != "auto":
                try:
                    value = parse_threads(text, "--threads")
                except ValueError as e:
                    raise UsageError(str(e)) from None
            continue
        out.append(a)
        i += 1
    return out, value


def name_environment_variables(command, path: list[str]) -> None:
    """Each option of ``command`` (and of a group's subcommands) reads DIMCTL_<COMMAND>_<OPTION>:
    the command's words and the option's first long flag, upper case, dashes as underscores
    (`dimctl probe --json` → DIMCTL_PROBE_JSON, `dimctl generate train --steps` →
    DIMCTL_GENERATE_TRAIN_STEPS). Named from the flag, not click's parameter name (which gave
    DIMCTL_PROBE_AS_JSON and DIMCTL_PRETRAIN_GLOBALS_); --help and --version read none."""
    for param in command.params:
        longs = [flag for flag in getattr(param, "opts", ()) if flag.startswith("--")]
        if getattr(param, "param_type_name", "") != "option" or not longs:
            continue
        param.envvar = "_".join(["DIMCTL", *path, longs[0][2:]]).upper().replace("-", "_")
        param.show_envvar = False  # the rule is documented once (README, --config's help), not 80 times
    for sub_name, sub in getattr(command, "commands", {}).items():
        name_environment_variables(sub, [*path, sub_name])


@contextlib.contextmanager
def help_as_written(command, ctx):
    """While ``command``'s help is written: every text (the command's, its options', its
    subcommands' lines) shows as written, not read as Rich markup, which took `[tensorboard]` for
    a style and printed `pip install 'dimctl'`; and a flag shows no value label (typer labels it
    <bool>, but `--resume true` is refused: a flag takes no value). All is put back after."""
    changed = []

    def change(obj, attr: str, value) -> None:
        changed.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    escape = None
    if getattr(command, "rich_markup_mode", None) == "rich" and getattr(typer.core, "HAS_RICH", True):
        from rich.markup import escape  # what the help is rendered with anyway
    group = isinstance(command, typer.core.TyperGroup)
    subcommands = [command.get_command(ctx, name) for name in command.list_commands(ctx)] if group else []
    try:
        for obj in [command, *command.get_params(ctx), *filter(None, subcommands)]:
            for attr in ("help", "short_help", "epilog"):
                if escape is not None and isinstance(getattr(obj, attr, None), str):
                    change(obj, attr, escape(getattr(obj, attr)))
            if getattr(obj, "is_flag", False) and not getattr(obj, "count", False) and obj.metavar is None:
                change(obj, "metavar", "")
        yield
    finally:
        for obj, attr, value in reversed(changed):
            setattr(obj, attr, value)


class HelpAsWritten:
    """Of every dimctl command and group: ``--help`` as ``help_as_written`` says. Typer's Rich help
    is kept for its panels (pretrain's options in groups) and its keeping of the docstrings' lines."""

    def format_help(self, ctx, formatter) -> None:
        with help_as_written(self, ctx):
            super().format_help(ctx, formatter)


class Command(HelpAsWritten, typer.core.TyperCommand):
    """A dimctl command (load_command builds every command function as one)."""


class Group(HelpAsWritten, typer.core.TyperGroup):
    """A dimctl group of subcommands (`dimctl generate`)."""


def _build_with_help_as_written(app: typer.Typer) -> None:
    """Have typer build ``app``'s group and commands (and any nested group's) from Group and Command."""
    def ours(cls, plain, own):  # typer's own class (or none yet, maybe as a Default placeholder): ours instead
        return own if getattr(cls, "value", cls) in (None, plain) else cls

    app.info.cls = ours(app.info.cls, typer.core.TyperGroup, Group)
    for info in app.registered_commands:
        info.cls = ours(info.cls, typer.core.TyperCommand, Command)
    for info in app.registered_groups:
        _build_with_help_as_written(info.typer_instance)


def _unset_stays_none(process_value):
    """An option that was not given (None) stays None without typer's coercion, whose first use
    imports pydantic (~0.1 s): otherwise the group's own options would make `dimctl probe --help` pay."""
    def process(ctx, value):
        return None if value is None else process_value(ctx, value)
    return process


class LazyGroup(Group):
    """A group whose subcommands (COMMANDS) are imported when used, not when the group is built.

    Its own help lists every command from the table, with nothing imported."""

    _listing = False  # while the group's own help is written: table entries, not the real commands

    def get_params(self, ctx):
        params = super().get_params(ctx)  # --version, --debug, --config (run() reads it itself), --help
        for param in params:
            if not getattr(param, "_unset_stays_none", False):
                param.process_value = _unset_stays_none(param.process_value)
                param._unset_stays_none = True
        return params

    def list_commands(self, ctx) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx, name: str):
        if name in self.commands:
            return self.commands[name]
        if name not in COMMANDS:
            return None
        if self._listing:  # one entry per name, so that help_as_written changes the one the help lists
            entries = self.__dict__.setdefault("_entries", {})
            return entries.setdefault(name, typer.core.TyperCommand(name, help=COMMANDS[name][2]))
        command = self.commands[name] = load_command(name)
        return command

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except Exception as e:
            # Typer suggests close names from self.commands, which holds only the commands loaded so far.
            message = getattr(e, "message", None)
            if _is_click_error(e) and isinstance(message, str) and args and getattr(self, "suggest_commands", True):
                matches = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    base = message.split(". Did you mean ")[0].rstrip(".")
                    e.message = f"{base}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


app = typer.Typer(
    cls=LazyGroup,
    name="dimctl",
    help="Deep InfoMax as composable steps: pretrain an encoder, extract features, probe them.\n\n"
         "Example:\n\n"
         "  dimctl pretrain --out runs/demo\n"
         "  dimctl extract runs/demo/encoder.safetensors | dimctl probe",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
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
    threads: str = typer.Option(None, "--threads", metavar="N",
                                help="Threads to compute with (any position; also DIMCTL_THREADS). Default: the idle "
                                     "share of the cores, 1 per job under make -jN; OMP_NUM_THREADS is honoured."),
    config: str = typer.Option(None, "--config", metavar="FILE.toml",
                               help="Option defaults from a TOML file, under flags and DIMCTL_<COMMAND>_<OPTION> variables."),
):
    """Options given here apply to every subcommand."""


def _is_click_error(e: Exception) -> bool:
    # Typer may vendor its own copy of click, so match click's exception protocol, not its class.
    return hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)


def _quiet_exit() -> int:
    """The reader stopped early (`… | head -1`): not our failure, and nothing left to say."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def _fail(message: str, code: int) -> int:
    # Names in messages come from outside: escaped, a newline or an escape sequence in one cannot
    # split the line, forge another, or reach the terminal (dimctl/text.py).
    print(f"dimctl: error: {one_line(message)}", file=sys.stderr, flush=True)
    return code


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so every atomic write removes its temporary file on the way out
    # (pretrain installs its own handler that checkpoints first).
    raise KeyboardInterrupt


def run(argv: list[str]) -> int:
    from dimctl.allocator import keep_freed_memory
    from dimctl.threads import CpuSample

    keep_freed_memory()  # before any work: a step's big buffers reuse freed memory (dimctl/allocator.py)
    _startup.clear()
    _startup["sample"] = CpuSample()  # what the machine does while this command starts (dimctl/threads.py)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings(record=True) as held:
            code = _run(argv)
        _show_warnings(held, code == 0 or "--debug" in argv or os.environ.get("DIMCTL_DEBUG", "") not in ("", "0"))
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)
        release_run_locks()


def _show_warnings(held: list[warnings.WarningMessage], shown: bool) -> None:
    """Library warnings (numpy's overflow, torch's on a crafted checkpoint) are held while the
    command runs: a command that fails says so in its one error line, and the warnings that led up
    to the failure would only bury it; one that succeeds shows them at its end (--debug: always)."""
    if not shown:
        return
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def _complete() -> int:
    """Print the completions the shell asked for (COMP_WORDS …). Completing a subcommand's options
    imports that subcommand, as running it would."""
    try:
        typer.main.get_command(app).main(args=[], prog_name="dimctl", complete_var="_DIMCTL_COMPLETE")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    return 0


def _run(argv: list[str]) -> int:
    debug = "--debug" in argv or os.environ.get("DIMCTL_DEBUG", "") not in ("", "0")
    args = [a for a in argv if a != "--debug"]
    if os.environ.get("_DIMCTL_COMPLETE"):  # the shell asks for completions (--install-completion's script)
        return _complete()
    if not args:  # a short usage on stderr, not the whole help on stdout (it is an error: exit 2)
        print("usage: dimctl COMMAND [OPTIONS] ...  (dimctl --help lists the commands; dimctl COMMAND --help "
              "explains one)", file=sys.stderr)
        return 2
    command = typer.main.get_command(app)
    try:
        args, config_path = config_file.pop_config_flag(args)
        args, _startup["threads"] = pop_threads_flag(args)
        args, warnings = deprecations.rewrite(args)
        for warning in warnings:
            print(f"dimctl: warning: {one_line(warning)}", file=sys.stderr, flush=True)
        config_path = config_path or os.environ.get("DIMCTL_CONFIG") or None
        default_map = config_file.load_default_map(Path(config_path), command, args) if config_path else None
        rv = command.main(args=args, prog_name="dimctl", standalone_mode=False,
                          default_map=default_map)  # no auto_envvar_prefix: name_environment_variables
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
            ctx, names = getattr(e, "ctx", None), []
            while ctx is not None and ctx.parent is not None:  # `dimctl generate train`, not `dimctl train`
                names.insert(0, ctx.info_name)
                ctx = ctx.parent
            where = " ".join(["dimctl", *names])
            return _fail(f"{e.format_message()} (see `{where} --help`)", e.exit_code)
        # A bug or an unexpected environment: one line, traceback on request.
        if debug:
            traceback.print_exc()
            return 1
        return _fail(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", 1)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
