"""Running the serving tier's own command (``python -m lighthouse_serving``) from the gateway's
CLI: the tier lives in its own environment (Ray, vLLM), which the gateway never imports.

The environment is found at ``$LIGHTHOUSE_SERVING_ENV``, or where ``make serving-env`` wrote its
path (``.lighthouse/serving-env``); the tier's code is the checkout's ``serving/`` directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

CHECKOUT_RECORD = Path(".lighthouse/serving-env")
DEFAULT_CONFIG = Path("serving/configs/cpu-tiny.yaml")


class ServingEnvMissing(RuntimeError):
    """No serving environment was found; the message says how to make one."""


def serving_python(checkout: Path) -> Path:
    configured = os.environ.get("LIGHTHOUSE_SERVING_ENV")
    record = checkout / CHECKOUT_RECORD
    if configured:
        env = Path(configured)
    elif record.is_file():
        env = Path(record.read_text().strip())
    else:
        raise ServingEnvMissing(
            "no serving environment: build it with `make serving-env` (about 7 GB, a few "
            "minutes, once per machine) or point LIGHTHOUSE_SERVING_ENV at one"
        )
    python = env / "bin" / "python"
    if not python.is_file():
        raise ServingEnvMissing(
            f"{env} is not a serving environment (no bin/python); run `make serving-env`"
        )
    return python


def serving_command(checkout: Path, *arguments: str) -> list[str]:
    return [str(serving_python(checkout)), "-m", "lighthouse_serving", *arguments]


def serving_environment(checkout: Path) -> dict[str, str]:
    """The tier's code from the checkout; nothing from a model hub, ever."""
    path = os.environ.get("PYTHONPATH")
    code = str(checkout / "serving")
    return os.environ | {
        "PYTHONPATH": code if not path else f"{code}{os.pathsep}{path}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def run(checkout: Path, *arguments: str) -> int:
    """Run the tier's command in the foreground (its progress on this terminal)."""
    completed = subprocess.run(
        serving_command(checkout, *arguments),
        cwd=checkout,
        env=serving_environment(checkout),
        check=False,
    )
    return completed.returncode
