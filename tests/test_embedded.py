"""The embedded servers a killed run leaves behind are stopped by the next run, and nothing
else is: not a server whose owner still runs, not a process a stale pid file names."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil
import pytest

from tests import embedded
from tests.support import REPOSITORY

pytestmark = pytest.mark.server

CHILD = """
import sys, time
from pathlib import Path
from tests.embedded import embedded_server
with embedded_server(Path(sys.argv[1])) as url:
    print(url, flush=True)
    time.sleep(600)
"""


def postgres_under(root: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and any(str(root) in part for part in command):
            found.append(process)
    return found


async def answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


def test_a_killed_runs_server_is_stopped_and_its_home_removed(tmp_path: Path) -> None:
    root = tmp_path / "homes"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        cwd=REPOSITORY, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)  # as a CI timeout or the OOM killer would
    child.wait(10)
    assert asyncio.run(answers(url))  # the orphan still serves
    (home,) = list(root.iterdir())
    assert postgres_under(home)

    assert embedded.reap_orphans(root) == [home]
    assert not home.exists()
    assert not postgres_under(home)
    assert not asyncio.run(answers(url))


async def test_a_server_whose_owner_runs_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "homes"
    with embedded.embedded_server(root) as url:
        assert embedded.reap_orphans(root) == []
        connection = await asyncpg.connect(url)
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
    assert list(root.iterdir()) == []  # and its owner removes it on the way out


def test_a_stale_pid_file_names_no_process_to_stop(tmp_path: Path) -> None:
    """A dead owner's home whose postmaster.pid names a live process that is not its
    postgres (a reused pid: here this very test process): removed, nothing signalled."""
    home = tmp_path / "homes" / "left"
    (home / "data").mkdir(parents=True)
    (home / embedded.OWNER_FILE).write_text(json.dumps({"pid": 2**22 + 1, "started": 0}))
    (home / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n{home / 'data'}\n")
    assert embedded.reap_orphans(tmp_path / "homes") == [home]
    assert not home.exists()
    assert psutil.Process().is_running()
