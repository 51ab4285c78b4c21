"""The boundaries of ARCHITECTURE.md are checked, not described: import-linter's contracts
(pyproject.toml, run by the test command) and no import cycles. These tests keep the contracts'
lists complete as modules and domains are added."""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import api
import api.graph
from tests.support import REPOSITORY

CONTRACTS: list[dict[str, Any]] = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())[
    "tool"
]["importlinter"]["contracts"]


def contract(contract_id: str) -> dict[str, Any]:
    return next(c for c in CONTRACTS if c["id"] == contract_id)


def test_the_domain_contract_forbids_every_other_part_of_the_project() -> None:
    top_level = {f"api.{module.name}" for module in pkgutil.iter_modules(api.__path__)}
    forbidden = set(contract("domain-imports-nothing")["forbidden_modules"])
    assert forbidden == top_level - {"api.domain"}


def test_the_graph_core_contract_names_every_domain_package() -> None:
    domains = {
        f"api.graph.{module.name}"
        for module in pkgutil.iter_modules(api.graph.__path__)
        if module.name != "core"
    }
    assert set(contract("graph-core-names-no-domain")["forbidden_modules"]) == domains


def test_the_gateway_contract_covers_the_serving_stack() -> None:
    gateway = contract("gateway-never-imports-serving")
    assert gateway["source_modules"] == ["api"]
    assert {"serving", "ray", "vllm"} <= set(gateway["forbidden_modules"])
    # The gateway's environment stays small: none of them is even installed there.
    for package in ("ray", "vllm", "torch"):
        assert importlib.util.find_spec(package) is None, f"{package} is in the gateway's venv"


def test_there_are_no_import_cycles() -> None:
    picture = subprocess.run(
        [sys.executable, str(REPOSITORY / "scripts" / "module-picture"), "api"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "import cycles: 0" in picture.stdout, picture.stdout


def test_the_contracts_hold() -> None:
    linted = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in linted.stdout
