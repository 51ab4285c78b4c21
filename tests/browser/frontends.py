"""Frontends as the bureaus' teams build them: the README's client snippets, each with its own
tooling (GraphQL Code Generator for urql, Apollo's manifest generator, Relay's compiler) writing
the persisted-document manifest the gateway registers, bundled by esbuild for a browser page.

The apps' own files live in ``tests/clients/apps/<app>/``; the README's blocks that start with a
``// <path>`` line are written into the app at that path, so the snippets users copy are the code
the browser runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import wait_for_tool

REPOSITORY = Path(__file__).resolve().parents[2]
CLIENTS = REPOSITORY / "tests" / "clients"
APPS = CLIENTS / "apps"
TOOLS = CLIENTS / "node_modules" / ".bin"


@dataclass(frozen=True)
class Toolchain:
    """How an app is built: the README files it takes, the command that writes its manifest
    (none for an app that sends texts) and where that manifest is written."""

    readme_files: tuple[str, ...]
    command: tuple[str, ...] = ()
    manifest: str | None = None


TOOLCHAINS = {
    "urql": Toolchain(
        ("codegen.ts", "src/urql.ts"),
        ("graphql-codegen", "--config", "codegen.ts"),
        "src/gql/persisted-documents.json",
    ),
    "apollo": Toolchain(
        ("src/apollo.ts",), ("generate-persisted-query-manifest",), "persisted-query-manifest.json"
    ),
    "relay": Toolchain(("src/relay.ts",), ("relay-compiler",), "persisted_queries.json"),
    "live": Toolchain(("src/live.ts",)),
}


@dataclass(frozen=True)
class BuiltApp:
    name: str
    bundle: bytes
    manifest: Path | None


def readme_files() -> dict[str, str]:
    """The README's code blocks that name the file they are, by that name."""
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    files: dict[str, str] = {}
    for block in re.findall(r"```(?:ts|js)\n(.*?)```", text, flags=re.DOTALL):
        first, _, rest = block.partition("\n")
        named = re.fullmatch(r"// (\S+)", first)
        if named:
            assert named[1] not in files, f"README.md has two blocks named {named[1]}"
            files[named[1]] = rest
    return files


def build(name: str, into: Path) -> BuiltApp:
    """Build the app ``name`` in ``into``: its files and the README's, its toolchain, then
    esbuild. A failing step raises with the tool's own output."""
    toolchain = TOOLCHAINS[name]
    wait_for_tool("clients")
    assert (TOOLS / "esbuild").exists(), (
        "the test clients are missing: run `npm ci --prefix tests/clients`"
    )
    work = into / name
    shutil.copytree(APPS / name, work)
    shutil.copy(APPS / "harness.ts", into / "harness.ts")
    shutil.copy(REPOSITORY / "schema.graphql", work / "schema.graphql")
    (work / "node_modules").symlink_to(CLIENTS / "node_modules")
    snippets = readme_files()
    for path in toolchain.readme_files:
        assert path in snippets, f"README.md has no block starting `// {path}`"
        (work / path).write_text(snippets[path], encoding="utf-8")
    if toolchain.command:
        _run(work, str(TOOLS / toolchain.command[0]), *toolchain.command[1:])
    _run(
        work,
        str(TOOLS / "esbuild"),
        "src/main.ts",
        "--bundle",
        "--format=esm",
        "--platform=browser",
        "--target=chrome120",
        "--define:process.env.NODE_ENV='\"production\"'",
        "--outfile=dist/app.js",
        "--log-level=warning",
    )
    manifest = work / toolchain.manifest if toolchain.manifest else None
    return BuiltApp(name, (work / "dist" / "app.js").read_bytes(), manifest)


def _run(cwd: Path, *command: str) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
