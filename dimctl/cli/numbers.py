"""Every numeric option checked as it is parsed: finite, in its range, or exit 2 naming the flag.

One rule per kind of number rather than one check per command, so a flag added later is covered
too: floats are finite (NaN trains silently, inf makes NaN later); learning rates and other
scales are positive; counts are ≥ 0 and sizes ≥ 1; loss weights ≥ 0; a seed fits numpy's and
torch's 32-bit seeds. An option derived from a setting also checks the range the setting declares
(dimctl/settings.py ``setting(…, minimum=…, positive=…)``, cli/settings_options.py), so the
training commands' and the probes' settings are not listed here. Commands still check what depends on several flags at once.
"""

import math

import typer

SEED_MAX = 2**32 - 1
# Options not derived from a setting whose value must be positive: scales, sizes and counts that 0
# makes meaningless (a setting declares its own range).
POSITIVE = {"--lr", "--batch-size", "--num", "-n", "--splits"}
# Float options that may be any finite number (the means of the generator's target distributions).
ANY_SIGN = {"--mu-real", "--mu-fake"}


def _rule(flags: list[str]):
    positive = any(f in POSITIVE or f.endswith("-lr") for f in flags)
    seed = "--seed" in flags
    any_sign = any(f in ANY_SIGN for f in flags)

    def check(value) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number")
        if seed and not 0 <= value <= SEED_MAX:
            raise typer.BadParameter(f"{value} is not a seed in 0…{SEED_MAX}")
        if positive and value <= 0:
            raise typer.BadParameter(f"{value} must be positive")
        if not (positive or any_sign) and value < 0:
            raise typer.BadParameter(f"{value} must be 0 or more")
    return check


def check_numbers(command) -> None:
    """Attach the rule of each int or float option of ``command`` (and of a group's subcommands)."""
    for param in command.params:
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if getattr(param, "param_type_name", "") != "option" or annotation not in (int, float):
            continue
        check, previous = _rule(list(param.opts)), param.callback

        def callback(ctx, p, value, check=check, previous=previous):
            for item in value if isinstance(value, (list, tuple)) else [value]:
                check(item)
            return previous(ctx, p, value) if previous is not None else value
        param.callback = callback
    for sub in getattr(command, "commands", {}).values():
        check_numbers(sub)
