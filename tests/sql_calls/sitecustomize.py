"""Which functions of the modules that define or send SQL each process ran, and which migrations
went up and down: what the second pass is checked by (tests/second_pass.py), recorded without a
trace function.

A trace function (coverage's, on Python 3.11) puts every frame of every process on the
interpreter's slow path: it cost the suite about 40% more processor time, to learn which of a few
hundred functions ran. Instead, when ``LIGHTHOUSE_SQL_CALLS`` names a directory and this
directory is on ``PYTHONPATH`` (scripts/run-tests sets both for the passes), every Python process
the suite starts (the test workers, the gateways, the command-line runs) wraps, as each module of
``SQL_PACKAGES`` is imported, its functions and its classes' methods in a recorder, and the
migrations' ``upgrade`` and ``downgrade`` as alembic loads them. At exit (SIGTERM included) it
writes the names that ran to a file of its own in that directory, as ``{path: [name, ...]}``.

It is self-contained (imports nothing of the project) because it runs before the process's own
path is set up; in a process where the variable is unset it does nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

SQL_PACKAGES = ("api.repositories", "api.db", "api.events")
MIGRATIONS = ("migrations", "versions")
_ran: dict[str, set[str]] = {}


def _recorded(path: str, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    names = _ran.setdefault(path, set())
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def recorded_coroutine(*args: Any, **kwargs: Any) -> Any:
            names.add(name)
            return await function(*args, **kwargs)

        return recorded_coroutine

    @functools.wraps(function)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        names.add(name)
        return function(*args, **kwargs)

    return recorded


def _defined_in(function: Callable[..., Any], module: str) -> bool:
    """Written in ``module``'s file: not a method a decorator generated (a dataclass's
    ``__repr__``, which has no lines of the module's own)."""
    source = sys.modules[module].__file__ if module in sys.modules else None
    code = getattr(function, "__code__", None)
    return bool(
        function.__module__ == module
        and code is not None
        and source is not None
        and os.path.realpath(code.co_filename) == os.path.realpath(source)
    )


def _wrap_class(path: str, cls: type, prefix: str) -> None:
    for attribute, value in list(vars(cls).items()):
        name = f"{prefix}.{attribute}"
        if isinstance(value, staticmethod | classmethod):
            wrapped = type(value)(_recorded(path, name, value.__func__))
        elif isinstance(value, property):
            wrapped = property(
                *(
                    _recorded(path, name, part) if part is not None else None
                    for part in (value.fget, value.fset, value.fdel)
                ),
                value.__doc__,
            )
        elif inspect.isfunction(value) and _defined_in(value, cls.__module__):
            wrapped = _recorded(path, name, value)
        elif inspect.isclass(value) and value.__module__ == cls.__module__:
            _wrap_class(path, value, name)
            continue
        else:
            continue
        with contextlib.suppress(AttributeError, TypeError):  # a class that refuses it
            setattr(cls, attribute, wrapped)


def _wrap_module(module: ModuleType, root: Path) -> None:
    try:
        path = Path(module.__file__ or "").resolve().relative_to(root).as_posix()
    except ValueError:
        return
    for attribute, value in list(vars(module).items()):
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value) and _defined_in(value, module.__name__):
            setattr(module, attribute, _recorded(path, value.__qualname__, value))
        elif inspect.isclass(value):
            _wrap_class(path, value, value.__qualname__)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the SQL modules as the other finders do, and wraps them once they have run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        ours = any(fullname == p or fullname.startswith(p + ".") for p in SQL_PACKAGES)
        if not ours and fullname != "alembic.util":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module
        root = self.root

        def exec_module(module: ModuleType) -> None:
            run(module)
            if ours:
                _wrap_module(module, root)
            else:
                _watch_migrations(module, root)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _watch_migrations(util: ModuleType, root: Path) -> None:
    """alembic loads each revision file itself: its upgrade and downgrade are wrapped then."""
    load = util.load_python_file

    def load_python_file(directory: str, filename: str) -> ModuleType:
        module = load(directory, filename)
        try:
            path = (Path(directory) / filename).resolve().relative_to(root).as_posix()
        except ValueError:
            return module
        if tuple(path.split("/")[:2]) == MIGRATIONS:
            for name in ("upgrade", "downgrade"):
                function = getattr(module, name, None)
                if inspect.isfunction(function):
                    setattr(module, name, _recorded(path, name, function))
        return module

    util.load_python_file = load_python_file


def _save(directory: Path) -> None:
    ran = {path: sorted(names) for path, names in _ran.items() if names}
    if ran:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{os.getpid()}-{os.urandom(4).hex()}.json"
        target.write_text(json.dumps(ran))


def _install(directory: Path, root: Path) -> None:
    sys.meta_path.insert(0, _Finder(root))
    atexit.register(_save, directory)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        _save(directory)
        _ran.clear()  # saved once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_sigterm)


# Installed once, as the interpreter's own sitecustomize (not when a test imports this file),
# and only where the gateway's code is (not in the serving tier's processes, which inherit the
# variables from the tests that start a tier).
if (
    os.environ.get("LIGHTHOUSE_SQL_CALLS")
    and __name__ == "sitecustomize"
    and importlib.util.find_spec("api") is not None
):
    _install(
        Path(os.environ["LIGHTHOUSE_SQL_CALLS"]).resolve(),
        Path(__file__).resolve().parent.parent.parent,
    )
