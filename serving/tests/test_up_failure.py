"""A start-up that fails leaves nothing running, and says why.

Runs after the served app's module (file order), so two Ray instances never share the 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lighthouse_serving.local import LocalInstance, instance_processes
from lighthouse_serving.probe import free_port

from .conftest import CPU_CONFIG, serving_command

pytestmark = pytest.mark.serving


def test_a_failed_start_stops_everything_it_started(tmp_path: Path) -> None:
    data = yaml.safe_load(CPU_CONFIG.read_text(encoding="utf-8"))
    model = data["models"][0]
    model["model_dir"] = str(tmp_path / "tiny-vlm")
    model["engine_extras"]["no_such_engine_argument"] = 1  # Ray Serve LLM refuses it at build
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    run_dir = tmp_path / "run"

    result = serving_command(
        "up", "--config", str(config), "--port", str(free_port()), "--run-dir", str(run_dir),
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    assert "exited (1) during start-up" in result.stderr
    assert "Unknown engine argument: no_such_engine_argument" in result.stderr
    assert LocalInstance(run_dir).state() is None  # forgotten: the next `up` starts afresh
    log = (run_dir / "serving.log").read_text(encoding="utf-8")
    assert "Started a local Ray instance" in log  # it got as far as starting Ray
    (record,) = [line for line in log.splitlines() if line.startswith("==== supervisor pid ")]
    words = record.split()
    pid, temp_dir = int(words[3].rstrip(",")), words[-1]
    assert list(instance_processes(pid, temp_dir)) == []
