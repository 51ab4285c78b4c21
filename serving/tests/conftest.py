"""The real serving tier, started once per session: `up` on a free port, `down` at the end.

The fixture runs the same commands the gateway runs (``python -m lighthouse_serving up`` and
``down``, as subprocesses with the environment's Python) with the shipped CPU config, pointed at
a tiny model and a run directory of the session's own.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lighthouse_serving.local import LocalInstance
from lighthouse_serving.probe import free_port

SERVING = Path(__file__).resolve().parents[1]
CPU_CONFIG = SERVING / "configs" / "cpu-tiny.yaml"


def serving_command(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m lighthouse_serving ARGS`` as the gateway runs it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SERVING), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "lighthouse_serving", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class ServedApp:
    base_url: str
    model: str
    run_dir: Path
    startup_seconds: float
    phase_when_up: str  # what the supervisor said it was doing when `up` returned

    @property
    def secret_file(self) -> Path:
        """Made by `up` (the config names none): the tier's callers' secrets."""
        return self.run_dir / "caller-secret"

    @property
    def caller(self) -> dict[str, str]:
        """The header of one of the tier's own callers (the file's newest secret)."""
        return {"authorization": f"Bearer {self.secret_file.read_text().split()[0]}"}


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The tiny VLM behind Ray Serve LLM on CPU (1-2 minutes to start on 2 cores)."""
    root = tmp_path_factory.mktemp("serving")
    data = yaml.safe_load(CPU_CONFIG.read_text(encoding="utf-8"))
    data["models"][0]["model_dir"] = str(root / "tiny-vlm")  # `up` writes it (tiny_model: true)
    config = root / "cpu-tiny.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    run_dir = root / "run"
    port = free_port()

    started = time.monotonic()
    result = serving_command(
        "up", "--config", str(config), "--port", str(port), "--run-dir", str(run_dir),
        timeout=900,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    phase_when_up = LocalInstance(run_dir).phase()
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        pytest.fail(f"`up` failed ({result.returncode}):\n{result.stderr[-4000:]}")
    base_url = result.stdout.strip().splitlines()[-1]
    assert base_url == f"http://127.0.0.1:{port}"
    try:
        yield ServedApp(base_url, data["models"][0]["name"], run_dir, elapsed, phase_when_up)
    finally:
        serving_command("down", "--run-dir", str(run_dir), timeout=300)


def png_data_uri(colour: tuple[int, int, int] = (180, 40, 40)) -> str:
    """A small camera-frame stand-in, as the base64 data URI an OpenAI client sends."""
    image = Image.new("RGB", (96, 64), colour)
    for x in range(20, 60):
        image.putpixel((x, 30), (20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
