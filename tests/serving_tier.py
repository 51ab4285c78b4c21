"""The real serving tier for the tests: Ray Serve LLM with vLLM on CPU and the tiny model,
started once per test session through its own command (``python -m lighthouse_serving``, in its
own environment), and stopped at the end — or in between, by a test of the outage path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from api.vision.serving import serving_command, serving_environment
from tests.support import REPOSITORY

# Two versions of the tiny model (variants 0 and 1), as the registry's trials need.
CONFIG = REPOSITORY / "serving" / "configs" / "cpu-tiny-two.yaml"
MODEL, CANDIDATE = "lighthouse-tiny-vlm", "lighthouse-tiny-vlm-b"


class ServingTier:
    def __init__(self, port: int, run_dir: Path, secret_file: Path) -> None:
        self.port = port
        self.run_dir = run_dir
        self.secret_file = secret_file  # the callers' secrets; `up` makes it
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = run_dir / "up.log"
        self.running = False

    def _run(self, *arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            return subprocess.run(
                serving_command(REPOSITORY, *arguments, "--run-dir", str(self.run_dir)),
                cwd=REPOSITORY,
                env=serving_environment(REPOSITORY),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=timeout,
                check=False,
            )

    def start(self, timeout: float = 900) -> None:
        """Up, and answering ``/v1/models`` with both versions (a cold start takes minutes)."""
        started = time.monotonic()
        done = self._run(
            "up", "--config", str(CONFIG), "--port", str(self.port), "--timeout", str(timeout),
            "--secret-file", str(self.secret_file), timeout=timeout + 60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"the serving tier did not start (exit {done.returncode}):\n"
                + self.log_path.read_text()[-6000:]
            )
        self.running = True
        models = httpx.get(f"{self.url}/v1/models", headers=self.caller(), timeout=30).json()
        assert sorted(m["id"] for m in models["data"]) == [MODEL, CANDIDATE], models
        self.started_in = time.monotonic() - started

    def stop(self) -> None:
        self.running = False
        done = self._run("down", timeout=300)
        if done.returncode != 0:
            raise RuntimeError(
                f"the serving tier did not stop cleanly (exit {done.returncode}):\n"
                + self.log_path.read_text()[-4000:]
            )

    def crash_front(self) -> int:
        """Kill the tier's HTTP front (Ray Serve's proxy actor) as a crash would; Ray Serve
        starts another within about half a minute. Nothing else of the tier stops. Its pid."""
        supervisor = json.loads((self.run_dir / "state.json").read_text())["pid"]
        for process in psutil.process_iter(["cmdline"]):
            command = process.info["cmdline"] or []
            try:
                ours = os.getsid(process.pid) == supervisor  # the instance's own session
            except OSError:
                continue
            if ours and command and command[0].startswith("ray::ProxyActor"):
                os.kill(process.pid, signal.SIGKILL)
                psutil.wait_procs([process], timeout=10)
                return process.pid
        raise RuntimeError(f"no Serve proxy in the serving tier's session ({supervisor})")

    def caller(self) -> dict[str, str]:
        """The header of the tier's own callers (the newest secret of the file)."""
        return {"authorization": f"Bearer {self.secret_file.read_text().split()[0]}"}

    def answers(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/v1/models", headers=self.caller(), timeout=5)
            return response.status_code == 200
        except httpx.HTTPError:
            return False
