"""Where the files the service reads at run time live: ``migrations/`` and ``policies/``.

In a checkout (and an editable install) they are the repository's own directories. A built
wheel carries copies inside the package (``api/_bundled/``, written by the build; see
``setup.py``), so an installed gateway can migrate and load its policies with no checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NAMES = ("migrations", "policies")


def directory(name: str) -> Path:
    """The directory holding ``name`` (``migrations`` or ``policies``)."""
    if name not in NAMES:
        raise ValueError(f"nothing bundled is called {name!r}")
    for candidate in (PACKAGE / "_bundled" / name, PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"{name}/ is neither in the installed package nor beside it; reinstall Lighthouse, or "
        f"set LIGHTHOUSE_{'MIGRATIONS_DIR' if name == 'migrations' else 'POLICIES_DIR'}"
    )
