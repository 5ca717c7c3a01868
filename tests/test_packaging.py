"""What pyproject.toml promises holds for the code."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_declared_python_has_every_stdlib_module_dimctl_imports():
    # tomllib (the TOML config) is new in Python 3.11: the package must not claim an older one.
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in re.match(r">=\s*(\d+)\.(\d+)", declared).groups())
    sources = "\n".join(p.read_text() for p in (ROOT / "dimctl").rglob("*.py"))
    if re.search(r"^\s*import tomllib|^\s*from tomllib", sources, flags=re.M):
        assert minimum >= (3, 11), declared
