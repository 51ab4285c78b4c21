"""What the second pass is checked by: each process's record of the SQL functions it ran
(tests/sql_calls/sitecustomize.py) and the check over the two passes' records
(tests/second_pass.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import second_pass
from tests.support import REPOSITORY

RUN = """
import asyncio, inspect, sys
from api.repositories.incidents import IncidentFilter, IncidentRepository
from api.repositories.sql import Conditions, like_pattern
assert like_pattern("5%") == "%5\\\\%%"
assert inspect.iscoroutinefunction(IncidentRepository.page)  # still a coroutine function
where = IncidentFilter(words=("x",)).conditions()
assert where.args == ["%x%"], where.args
if sys.argv[1] == "wait":
    print("ready", flush=True)
    asyncio.run(asyncio.sleep(60))
"""


def _run(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY / "tests" / "sql_calls"),
        "LIGHTHOUSE_SQL_CALLS": str(tmp_path / "calls"),
    }
    return subprocess.Popen(
        [sys.executable, "-c", RUN, mode],
        cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _recorded(tmp_path: Path) -> dict[str, set[str]]:
    return dict(second_pass.ran_in(tmp_path / "calls"))


def test_a_process_records_the_sql_functions_it_ran_at_exit(tmp_path: Path) -> None:
    process = _run(tmp_path, "exit")
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    ran = _recorded(tmp_path)
    assert {"like_pattern", "Conditions.__init__", "Conditions.add"} <= ran[
        "api/repositories/sql.py"
    ]
    assert "IncidentFilter.conditions" in ran["api/repositories/incidents.py"]
    assert "IncidentRepository.page" not in ran["api/repositories/incidents.py"]  # not called


def test_a_process_stopped_by_sigterm_records_too(tmp_path: Path) -> None:
    process = _run(tmp_path, "wait")
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGTERM
    assert "like_pattern" in _recorded(tmp_path)["api/repositories/sql.py"]


def test_without_the_variable_nothing_is_wrapped_or_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY / "tests" / "sql_calls")}
    env.pop("LIGHTHOUSE_SQL_CALLS", None)
    done = subprocess.run(
        [sys.executable, "-c", "from api.repositories.sql import like_pattern as f;"
         " print(f.__code__.co_name)"],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout == "like_pattern\n"  # the function itself, not a recorder


def _pass(directory: Path, ran: dict[str, list[str]]) -> Path:
    directory.mkdir()
    half = len(ran) // 2
    items = list(ran.items())
    # Two processes' records, merged by the check.
    (directory / "1.json").write_text(json.dumps(dict(items[:half])))
    (directory / "2.json").write_text(json.dumps(dict(items[half:])))
    return directory


@pytest.fixture
def every_migration() -> dict[str, list[str]]:
    return {
        f"migrations/versions/{path.name}": ["upgrade", "downgrade"]
        for path in (REPOSITORY / "migrations" / "versions").glob("*.py")
    }


def test_the_check_names_what_the_second_pass_missed(
    tmp_path: Path, every_migration: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    first = _pass(tmp_path / "first", {
        "api/repositories/sql.py": ["like_pattern", "Conditions.add"],
        "api/db/endpoints.py": ["start_embedded"],  # the embedded server's alone
        "api/graph/core/view.py": ["View.get"],  # not a SQL module
    })  # fmt: skip
    second = _pass(tmp_path / "second", {
        **every_migration,
        "api/repositories/sql.py": ["like_pattern"],
        "migrations/versions/0001_spine_schema.py": ["upgrade"],
    })  # fmt: skip
    assert second_pass.main([str(first), str(second)]) == 1
    said = capsys.readouterr().out
    assert "api/repositories/sql.py Conditions.add" in said
    assert "migrations/versions/0001_spine_schema.py downgrade" in said
    assert "start_embedded" not in said and "View.get" not in said
    complete = _pass(tmp_path / "complete", {
        **every_migration, "api/repositories/sql.py": ["like_pattern", "Conditions.add"],
    })  # fmt: skip
    assert second_pass.main([str(first), str(complete)]) == 0
    assert "ran all 2 functions" in capsys.readouterr().out


def test_the_check_refuses_a_first_pass_that_recorded_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert second_pass.main([str(empty), str(empty)]) == 1


def test_the_recorder_costs_next_to_nothing() -> None:
    """A recorded call is a set insertion and a call: far below a millisecond."""
    from tests.sql_calls import sitecustomize as recorder  # the module itself, never installed

    calls = recorder._recorded("x.py", "f", lambda value: value + 1)
    started = time.perf_counter()
    for n in range(100_000):
        calls(n)
    assert (time.perf_counter() - started) / 100_000 < 1e-4
    assert recorder._ran["x.py"] == {"f"}
