"""The second server's pass runs all the SQL the first pass runs.

The suite runs whole on the embedded PostgreSQL 18 and, for the tests marked ``db``, again on a
second server (PostgreSQL 15 on the development and CI machines): see the rule beside the marker
in pyproject.toml. That selection is made by hand, so it is checked by what the two passes did,
as every process of each pass recorded it (tests/sql_calls/sitecustomize.py; scripts/run-tests):

- every function of a module that defines or sends SQL (``SQL_DEFINING``: the repositories, the
  database layer, the change notifications) that the first pass ran, the second pass ran too;
- every migration's ``upgrade`` and ``downgrade`` ran in the second pass.

    python -m tests.second_pass FIRST_DIR SECOND_DIR    # the passes' LIGHTHOUSE_SQL_CALLS

Exits 1, naming what the second pass missed and what to do, when either does not hold.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

SQL_DEFINING = ("api/repositories/", "api/db/", "api/events/")
MIGRATIONS = "migrations/versions/"
# What only the embedded server can run, and why.
EMBEDDED_ONLY = {
    "api/db/endpoints.py": {"start_embedded": "starts the embedded server: there is no second"},
}

Ran = dict[str, set[str]]


def ran_in(directory: Path) -> Ran:
    """What the processes of a pass ran, by file: each process's record merged."""
    ran: Ran = defaultdict(set)
    for record in directory.glob("*.json"):
        for path, names in json.loads(record.read_text()).items():
            ran[path].update(names)
    return ran


def unexercised(first: Ran, second: Ran) -> list[str]:
    """Functions of SQL-defining modules the first pass ran and the second did not."""
    return [
        f"{path} {name}"
        for path, names in sorted(first.items())
        if path.startswith(SQL_DEFINING)
        for name in sorted(names - second.get(path, set()) - set(EMBEDDED_ONLY.get(path, {})))
    ]


def migrations_not_run(second: Ran, versions: Path) -> list[str]:
    """Migrations whose upgrade or downgrade the second pass did not run."""
    return [
        f"{MIGRATIONS}{revision.name} {name}"
        for revision in sorted(versions.glob("*.py"))
        for name in ("upgrade", "downgrade")
        if name not in second.get(f"{MIGRATIONS}{revision.name}", set())
    ]


def main(argv: list[str]) -> int:
    first, second = (ran_in(Path(name)) for name in argv)
    if not any(path.startswith(SQL_DEFINING) for path in first):
        print(f"second pass: nothing was recorded in {argv[0]}; is LIGHTHOUSE_SQL_CALLS set?")
        return 1
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
    functions = sum(len(names) for path, names in second.items() if path.startswith(SQL_DEFINING))
    print(
        f"second pass: ran all {functions} functions of the SQL-defining modules that the first"
        " pass ran, and every migration up and down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
