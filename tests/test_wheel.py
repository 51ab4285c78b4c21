"""A built wheel runs on its own: installed into a fresh virtual environment, away from any
checkout, it migrates an embedded database and answers a query — its migrations, policies and
GraphiQL's assets travel inside it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import embedded
from tests.support import REPOSITORY, free_port

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel. Its dependencies are the test venv's (a path entry,
    not an install: packages found that way are not the project's own), so nothing is
    downloaded; the project itself comes only from the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work), "."],
        cwd=REPOSITORY,
        check=True,
    )
    (wheel,) = work.glob("lighthouse-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--quiet", str(wheel)],
        check=True,
    )  # fmt: skip
    return venv


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory for the installed gateway's data under the suite's root for embedded servers: if this run is
    killed, the next one stops the PostgreSQL the installed gateway started here (tests/embedded.py)."""
    with embedded.owned_home() as path:
        yield path


def run(venv: Path, cwd: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "lighthouse"), *arguments],
        cwd=cwd,
        env=environment(cwd),
        capture_output=True,
        text=True,
        timeout=300,
    )


def environment(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    env.pop("PYTHONPATH", None)
    env.update({"LIGHTHOUSE_DATA_DIR": str(cwd / "data"), "LIGHTHOUSE_LOG_FORMAT": "json"})
    return env


def test_the_wheel_holds_the_project_and_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import api, api.bundled as b; print(api.__file__); print(b.directory('migrations'));"
         " print(b.directory('policies'))"],
        cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(str(installed) in line for line in where), where
    assert not any(str(REPOSITORY) in line for line in where), where


def test_the_installed_wheel_migrates_and_serves(installed: Path, home: Path) -> None:
    migrated = run(installed, home, "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "Database is at revision" in migrated.stdout + migrated.stderr
    port = free_port()
    log = (home / "gateway.log").open("w")
    server = subprocess.Popen(
        [str(installed / "bin" / "lighthouse"), "serve", "--port", str(port)],
        cwd=home, env=environment(home), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, (home / "gateway.log").read_text()[-3000:]
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError((home / "gateway.log").read_text()[-3000:])
        body = httpx.post(
            base + "/graphql", json={"query": "{ bureaus { code } categories { code } }"}
        ).json()
        assert "errors" not in body, body
        assert {"PUBLIC_WORKS", "RDEC"} <= {b["code"] for b in body["data"]["bureaus"]}
        assert body["data"]["categories"]
        assert httpx.get(base + "/graphiql/react.production.min.js").status_code == 200
    finally:
        server.terminate()
        server.wait(30)
    # Stopped by a signal, the gateway still stops the embedded PostgreSQL it started.
    assert not (home / "data" / "postgres" / "postmaster.pid").exists()
