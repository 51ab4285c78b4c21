"""``lighthouse demo`` on the embedded PostgreSQL: however it ends — SIGTERM, Ctrl-C, a failed
start — the embedded server it started stops with it, and so do the vision worker and the
serving tier; and its tokens are for the gateway it serves, whatever port that is on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests import embedded
from tests.support import REPOSITORY, free_port

pytestmark = pytest.mark.server


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory for the demo's data under the suite's root for embedded servers: if this run is
    killed, the next one stops the PostgreSQL the demo started here (tests/embedded.py)."""
    with embedded.owned_home() as path:
        yield path


def demo_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    return env | {"LIGHTHOUSE_DATA_DIR": str(data), "LIGHTHOUSE_LOG_FORMAT": "json"}


def postmaster(data: Path) -> Path:
    return data / "postgres" / "postmaster.pid"


def start_demo(
    data: Path, port: int, log: Path, serving_env: Path | None = None, *, json_logs: bool = True
) -> subprocess.Popen[bytes]:
    """The demo without the serving tier (its start is tested with the pipeline,
    tests/vision/test_pipeline.py; these tests are about the demo's own life cycle), or with a
    stand-in for the tier's command in ``serving_env``; its logs as JSON lines, or (``json_logs``
    false) in its own default format."""
    options = ["--no-serving"] if serving_env is None else []
    env = demo_env(data) | ({"LIGHTHOUSE_SERVING_ENV": str(serving_env)} if serving_env else {})
    if not json_logs:
        del env["LIGHTHOUSE_LOG_FORMAT"]
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--port", str(port), *options],
        cwd=REPOSITORY,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise AssertionError(log.read_text()[-3000:])


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_the_demo_stops_its_database_however_it_is_stopped(
    home: Path, stop: signal.Signals
) -> None:
    port, log = free_port(), home / "demo.log"
    process = start_demo(home, port, log, json_logs=stop is signal.SIGTERM)
    try:
        wait_ready(process, port, log)
        assert postmaster(home).exists()
        # The token command mints for the gateway it is pointed at (here not on 8000).
        token = subprocess.run(
            [sys.executable, "-m", "api.cli", "token", "--as", "city-viewer", "--url",
             f"http://127.0.0.1:{port}"],
            cwd=REPOSITORY, env=demo_env(home), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert token.returncode == 0, token.stderr
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ incidents(first: 1) { totalCount } }"},
            headers={"authorization": f"Bearer {token.stdout.strip()}"},
        ).json()
        assert answer["data"]["incidents"]["totalCount"] == 400, answer
    finally:
        process.send_signal(stop)
        process.wait(60)
    assert not postmaster(home).exists(), log.read_text()[-3000:]
    if stop is signal.SIGINT:
        # Left to its default, the demo's terminal shows one format, the gateway's lines too
        # (and a library's warning is one of its log lines).
        lines = log.read_text().splitlines()
        assert any("gateway.started" in line for line in lines), lines[-20:]
        assert not [line for line in lines if line.lstrip().startswith("{")], lines[-20:]
        warned = [line for line in lines if "Warning:" in line]
        assert all("warning" in line.split("Warning:")[0] for line in warned), warned


def test_a_demo_that_cannot_start_stops_its_database(home: Path) -> None:
    port, log = free_port(), home / "demo.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        process = start_demo(home, port, log)
        assert process.wait(180) != 0
    assert not postmaster(home).exists(), log.read_text()[-3000:]


def test_a_token_for_another_gateway_says_what_to_do(home: Path) -> None:
    port, log = free_port(), home / "demo.log"
    process = start_demo(home, port, log)
    try:
        wait_ready(process, port, log)
        # Minted for http://127.0.0.1:8000 (the default), not for this gateway.
        token = subprocess.run(
            [sys.executable, "-m", "api.cli", "token", "--as", "city-viewer"],
            cwd=REPOSITORY, env=demo_env(home), capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        refused = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ me { subject } }"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert refused.status_code == 401
        message = refused.json()["errors"][0]["message"]
        assert f"http://127.0.0.1:{port}" in message and "oauth-authorization-server" in message
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


@pytest.fixture
def serving_env(tmp_path: Path) -> Path:
    """A stand-in for the serving tier's environment: its ``python -m lighthouse_serving
    COMMAND …`` notes the command in ``calls`` beside it (``up`` answers at once)."""
    env = tmp_path / "serving-env"
    (env / "bin").mkdir(parents=True)
    python = env / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'echo "$3" >> {tmp_path / "calls"}\n'
        'if [ "$3" = up ]; then echo http://127.0.0.1:9; fi\n'
    )
    python.chmod(0o755)
    return env


def wait_for(log: Path, line: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while line not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def test_sigterm_stops_the_worker_and_the_serving_tier_as_ctrl_c_does(
    home: Path, serving_env: Path
) -> None:
    """A service manager stops the demo with SIGTERM: the vision worker (which holds the
    embedded PostgreSQL too) and the serving tier (its `down`) stop with the gateway."""
    port, log, calls = free_port(), home / "demo.log", serving_env.parent / "calls"
    process = start_demo(home, port, log, serving_env)
    workers: list[psutil.Process] = []
    try:
        wait_ready(process, port, log)
        wait_for(log, "vision.worker_started", process)
        workers = [
            child for child in psutil.Process(process.pid).children() if "worker" in child.cmdline()
        ]
        assert len(workers) == 1 and calls.read_text().split() == ["up"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    try:
        assert calls.read_text().split() == ["up", "down"], log.read_text()[-3000:]
        assert not psutil.wait_procs(workers, timeout=5)[1], "the vision worker is still running"
        assert not postmaster(home).exists(), log.read_text()[-3000:]
        assert process.returncode == 0
    finally:
        stop_what_is_left(home, workers)


def stop_what_is_left(home: Path, processes: list[psutil.Process]) -> None:
    """What a demo that failed to stop left running: its worker, and its PostgreSQL."""
    for leftover in processes:
        if leftover.is_running():
            leftover.kill()
    try:
        server = psutil.Process(int(postmaster(home).read_text().split()[0]))
    except (OSError, ValueError, psutil.NoSuchProcess):
        return
    server.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
    server.wait(10)
