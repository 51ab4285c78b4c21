"""The second server's pass runs all the SQL the first pass runs.

The suite runs whole on the embedded PostgreSQL 18 and, for the tests marked ``db``, again on a
second server (PostgreSQL 15 on the development and CI machines): see the rule beside the marker
in pyproject.toml. That selection is made by hand, so it is checked by what the two passes did,
measured by coverage (scripts/run-tests):

- every function of a module that defines or sends SQL (``SQL_DEFINING``: the repositories, the
  database layer, the change notifications) that the first pass ran, the second pass ran too;
- every migration's ``upgrade`` and ``downgrade`` ran in the second pass.

    python -m tests.second_pass FIRST.json SECOND.json    # coverage json reports of the passes

Exits 1, naming what the second pass missed and what to do, when either does not hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SQL_DEFINING = ("api/repositories/", "api/db/", "api/events/")
MIGRATIONS = "migrations/versions/"
# What only the embedded server can run, and why.
EMBEDDED_ONLY = {
    "api/db/endpoints.py": {"start_embedded": "starts the embedded server: there is no second"},
}


def _ran(function: dict[str, Any] | None) -> bool:
    return bool(function and function["executed_lines"])


def unexercised(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """Functions of SQL-defining modules the first pass ran and the second did not."""
    missed = []
    for path, measured in sorted(first["files"].items()):
        if not path.startswith(SQL_DEFINING):
            continue
        again = second["files"].get(path, {}).get("functions", {})
        exempt = EMBEDDED_ONLY.get(path, {})
        for name, function in measured["functions"].items():
            if name and name not in exempt and _ran(function) and not _ran(again.get(name)):
                missed.append(f"{path}:{function['start_line']} {name}")
    return missed


def migrations_not_run(second: dict[str, Any], versions: Path) -> list[str]:
    """Migrations whose upgrade or downgrade the second pass did not run."""
    missed = []
    for revision in sorted(versions.glob("*.py")):
        path = f"{MIGRATIONS}{revision.name}"
        functions = second["files"].get(path, {}).get("functions", {})
        missed += [
            f"{path} {name}" for name in ("upgrade", "downgrade") if not _ran(functions.get(name))
        ]
    return missed


def main(argv: list[str]) -> int:
    first, second = (json.loads(Path(name).read_text()) for name in argv)
    repository = Path(__file__).resolve().parent.parent
    missed = unexercised(first, second)
    unmigrated = migrations_not_run(second, repository / MIGRATIONS)
    if missed or unmigrated:
        print("second pass: the second PostgreSQL server did not run all the SQL the first ran.")
        for line in missed + unmigrated:
            print(f"  {line}")
        print(
            "Mark `db` a test that exercises it (the rule is beside the marker in pyproject.toml),"
            " or write one."
        )
        return 1
    ran = sum(
        1
        for path, measured in second["files"].items()
        if path.startswith(SQL_DEFINING)
        for name, function in measured["functions"].items()
        if name and _ran(function)
    )
    print(
        f"second pass: ran all {ran} functions of the SQL-defining modules that the first pass"
        " ran, and every migration up and down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
