"""Packaging hook: a built wheel carries ``migrations/`` and ``policies/``.

They live at the repository's top level (the design fixes it), outside the ``api`` package, so
setuptools' package data cannot reach them. The build copies them into ``api/_bundled/``, where
``api.bundled`` finds them in an installed gateway; a checkout (and an editable install) reads
the repository's own directories. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("migrations", "policies")


class BuildWithMigrationsAndPolicies(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in BUNDLED:
            target = Path(self.build_lib) / "api" / "_bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(
                ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


setup(cmdclass={"build_py": BuildWithMigrationsAndPolicies})
