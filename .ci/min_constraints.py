"""Print pip constraints pinning every declared floor (``pkg>=X``) of pyproject.toml to ``pkg==X``.

``make test-min`` installs the library with these constraints, so the
versions it tests are the declared minimums, not whatever is newest.
Only the core dependencies and the extras named on the command line are
pinned (default: the SQL engines); the test tools keep their own floors.

Usage::

    python .ci/min_constraints.py [extra ...] > constraints.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*$")


def constraints(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for req in requirements:
        m = FLOOR.match(req)
        if m:
            pins[m.group(1).lower()] = m.group(3)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["duckdb", "datafusion"]
    print("\n".join(constraints(Path(__file__).resolve().parents[1] / "pyproject.toml", chosen)))
