"""Settings declared once: a dataclass field that carries its own command-line help.

A run's config is a dataclass whose fields are settings or sections (dataclasses of settings):
``PretrainConfig`` has ``data``, ``encoder``, ``objective``, ``optimiser`` and ``run``. A field made
by ``registered_sections`` holds the values of sections known only at run time (each registered
``--method``'s own settings), kept as {name: value} and dissolved like a section's. Its flat view
(every setting by its own name, sections dissolved) is what config.json holds and what the CLI's
options are: `cli/settings_options.py` derives each option, its default and its help from the
field, so nothing is written twice. Setting names are unique across a config's sections.
"""

import inspect
from dataclasses import MISSING, Field, field, fields, is_dataclass, replace


def setting(default, help: str, *, flags: tuple[str, ...] = (), resumable: bool = False, cli: bool = True,
            unset: bool = False, choices: tuple[str, ...] = (), panel: str | None = None,
            minimum: float | None = None, positive: bool = False):
    """A field with its help. ``flags``: the option's spellings (default ``--field-name``; booleans
    name theirs: ``("--occlude",)`` or ``("--hflip/--no-hflip",)``). ``resumable``: ``--resume`` may
    change it. ``cli=False``: no option (a setting only the library sets). ``unset``: the option
    defaults to None, "not given", and the command resolves it (e.g. DIM's weights from the preset).
    ``choices``: the values it may take (``invalid_choice`` checks them). ``panel``: the heading it is
    listed under in ``--help`` (default: the ``PANEL`` of the class that declares it, ``panel_of``).
    ``minimum`` (inclusive) or ``positive``: its range, which ``out_of_range`` checks in the
    library and the derived option checks as it is parsed (cli/settings_options.py)."""
    return field(default=default, metadata={"help": help, "flags": flags, "resumable": resumable, "cli": cli,
                                            "unset": unset, "choices": tuple(choices), "panel": panel,
                                            "minimum": minimum, "positive": positive})


def range_problem(f: Field, value) -> str | None:
    """Why ``value`` is outside setting ``f``'s declared range ("must be ≥ 0"), or None."""
    if value is None or isinstance(value, bool):
        return None
    if f.metadata.get("positive") and not value > 0:
        return "must be positive"
    minimum = f.metadata.get("minimum")
    if minimum is not None and not value >= minimum:
        return f"must be ≥ {minimum:g}"
    return None


def declared_problem(config) -> str | None:
    """The first setting outside its declared choices or range, as a message naming its option;
    None if all are inside them (the check every config's ``validate`` starts with)."""
    return invalid_choice(config) or out_of_range(config)


def out_of_range(config) -> str | None:
    """The first setting outside its declared range, as a message naming its option; None if all are in range."""
    flat = flatten(config)
    for f in declared(type(config)):
        problem = range_problem(f, flat[f.name])
        if problem:
            return f"--{f.name.replace('_', '-')} {problem}, not {flat[f.name]:g}"
    return None


def invalid_choice(config) -> str | None:
    """The first setting whose value is not one of its ``choices``, as a message naming its option; None if all are."""
    flat = flatten(config)
    for f in declared(type(config)):
        choices, value = f.metadata.get("choices"), flat[f.name]
        if choices and value is not None and value not in choices:
            return f"--{f.name.replace('_', '-')} {value!r} is not one of: {', '.join(choices)}"
    return None


def registered_sections(sections):
    """A field holding the settings of the sections ``sections()`` returns when asked (those
    registered by then), as {name: value}; ``declared``, ``flatten``, ``updated`` and the derived
    options dissolve them as they do a section's, so each is a setting like any other."""
    return field(default_factory=dict, metadata={"sections": sections})


def _registered(f: Field) -> list:
    found = f.metadata.get("sections")
    return list(found()) if found is not None else []


def declared(cls) -> list[Field]:
    """Every setting of a config class, sections dissolved, in declaration order."""
    out = []
    for f in fields(cls):
        section = _section_type(f)
        if section is not None:
            out.extend(declared(section))
        elif "sections" in f.metadata:
            out.extend(g for s in _registered(f) for g in declared(s))
        else:
            out.append(f)
    return out


def panel_of(cls, f: Field) -> str | None:
    """The ``--help`` heading of setting ``f`` of config class ``cls`` (sections searched): its own
    ``panel``, else the ``PANEL`` class attribute of the class that declares it (a section, or a
    base it inherits from, so DIMConfig's settings stay together), else None (the command's panel)."""
    if f.metadata.get("panel"):
        return f.metadata["panel"]
    for g in fields(cls):
        sections = [_section_type(g)] if _section_type(g) is not None else _registered(g)
        for section in sections:
            found = panel_of(section, f)
            if found is not None or f.name in {h.name for h in declared(section)}:
                return found
        if not sections and g.name == f.name:
            owner = next(c for c in cls.__mro__ if f.name in inspect.get_annotations(c))
            return getattr(owner, "PANEL", None)
    return None


def flatten(config) -> dict:
    """The flat view: {setting name: value}."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if "sections" in f.metadata:  # every registered section's settings, at their defaults unless set
            out.update({g.name: value.get(g.name, g.default) for s in _registered(f) for g in declared(s)})
        else:
            out.update(flatten(value) if is_dataclass(value) else {f.name: value})
    return out


def updated(config, **flat):
    """``config`` with settings replaced by flat name, wherever their section is. An unknown name is a KeyError."""
    unknown = set(flat) - {f.name for f in declared(type(config))}
    if unknown:
        raise KeyError(f"unknown setting {sorted(unknown)[0]!r} of {type(config).__name__}")
    changes = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            mine = {k: v for k, v in flat.items() if k in {g.name for g in declared(type(value))}}
            if mine:
                changes[f.name] = updated(value, **mine)
        elif "sections" in f.metadata:  # kept off their defaults only, so equal configs compare equal
            defaults = {g.name: g.default for s in _registered(f) for g in declared(s)}
            mine = {k: v for k, v in flat.items() if k in defaults}
            if mine:
                changes[f.name] = {k: v for k, v in {**value, **mine}.items() if v != defaults.get(k)}
        elif f.name in flat:
            changes[f.name] = flat[f.name]
    return replace(config, **changes)


def _section_type(f: Field):
    factory = f.default_factory
    return factory if factory is not MISSING and is_dataclass(factory) else None


# The help of settings several commands share (pretrain, generate train, finetune, the data options
# of every command), so each says the same thing everywhere.
SHARED_HELP = {
    "data_root": "Folder holding the dataset's files (torchvision's layout; for `folder`, the image folder). "
                 "Default ./data; fashion-mnist also looks where Debian's dataset-fashion-mnist package puts it "
                 "(under /usr/share/datasets/).",
    "download": "Fetch the dataset if its files are missing (off: nothing downloads unless asked).",
    "log_every": "Write metrics.jsonl every N steps.",
    "hf_dataset": "hf:DIR (a Hugging Face dataset saved with save_to_disk) or hf:NAME (a Hub dataset in the local "
                  "Hugging Face cache; with --download, from the Hub); columns other than image and label as "
                  "hf:DIR?image=A&label=B.",
}
