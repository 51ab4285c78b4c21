"""The console's weight and first screen: its script and stylesheet as served (raw and gzip),
and, in Chromium on this machine, how long after a person picks whom to sign in as the board
shows its incidents (the code redeemed, the viewer and the first page of the board read through
registered documents), with the browser's first contentful paint.

An embedded PostgreSQL (bench/.work) gets the demo's data (``--incidents``, 400 by default), the
console's manifest is registered, a gateway runs registered documents only, and each of
``--runs`` fresh browser contexts signs in as pwb-supervisor.

    .venv/bin/python bench/console.py
    .venv/bin/python bench/console.py --incidents 400 --runs 10
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.http.console import CONSOLE_CLIENT, CONSOLE_DIRECTORY, CONSOLE_MANIFEST  # noqa: E402
from bench.graph_read import (  # noqa: E402
    WORK,
    log,
    recreate_database,
    run,
    seed,
    start_database,
    with_user,
)

DATABASE = "lighthouse_console_bench"
CHROMIUM = os.environ.get("LIGHTHOUSE_TEST_CHROMIUM", "/usr/bin/chromium")


def script_files() -> list[Path]:
    """The chunks and the map's worker beside app.js."""
    assets = CONSOLE_DIRECTORY / "assets"
    return sorted([*assets.glob("chunk-*.js"), *assets.glob("*.mjs")])


def static_imports(name: str) -> list[str]:
    """The chunks ``name`` imports as it loads (not those it loads later by import())."""
    text = (CONSOLE_DIRECTORY / "assets" / name).read_text()
    return sorted(set(re.findall(r'from\s*"\./(chunk-[A-Za-z0-9]+\.js)"', text)))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def first_screens(base_url: str, runs: int) -> list[tuple[float, float]]:
    """Per run: ms from choosing the principal to the board's rows, and the first contentful
    paint of the page the sign-in returned to (ms from its navigation)."""
    from playwright.async_api import async_playwright

    found = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(runs):
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{base_url}/console/")
            await page.locator("#sign-in").click()
            choice = page.locator('button[name="principal"][value="pwb-supervisor"]')
            await choice.wait_for()
            started = time.perf_counter()
            await choice.click()
            await page.locator("table.board tbody tr").first.wait_for()
            shown = (time.perf_counter() - started) * 1000
            paint = await page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
            )
            found.append((shown, float(paint)))
            await context.close()
        await browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=400)
    parser.add_argument("--runs", type=int, default=10)
    arguments = parser.parse_args()
    if not (CONSOLE_DIRECTORY / "assets" / "app.js").is_file():
        sys.exit("the console is not built: run scripts/build-console (make install does)")
    server_url = start_database()
    asyncio.run(recreate_database(server_url, DATABASE))
    owner_url = server_url.replace("/postgres?", f"/{DATABASE}?", 1)
    app_url = with_user(owner_url, "lighthouse_app")
    seed(owner_url, app_url, arguments.incidents, 300)
    port = free_port()
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_OAUTH_ISSUER": f"http://127.0.0.1:{port}",
        "LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY": "true",
        "LIGHTHOUSE_LOG_LEVEL": "WARNING",
    }
    run(
        [sys.executable, "-m", "api.cli", "documents", "register", str(CONSOLE_MANIFEST),
         "--client", CONSOLE_CLIENT],
        cwd=ROOT, env=env,
    )  # fmt: skip
    gateway_log = (WORK / "console-gateway.log").open("w")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=gateway_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            sys.exit("the gateway did not become ready; see bench/.work/console-gateway.log")
        sizes = {}
        for name in ("app.js", "app.css", *(p.name for p in script_files())):
            served = httpx.get(f"{base_url}/console/assets/{name}").content
            sizes[name] = (len(served), len(gzip.compress(served, 9)))
        log(f"{arguments.runs} sign-ins in Chromium …")
        screens = asyncio.run(first_screens(base_url, arguments.runs))
    finally:
        gateway.terminate()
        gateway.wait(10)

    shown = [s for s, _ in screens]
    paints = [p for _, p in screens if p >= 0]
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"data: {arguments.incidents} incidents (the demo's), board page of 50, pwb-supervisor")
    for name, (raw, packed) in sizes.items():
        print(f"{name}: {raw / 1024:.1f} KB, {packed / 1024:.1f} KB gzip")
    first = ["app.js", *static_imports("app.js")]
    scripts = [name for name in sizes if name.endswith((".js", ".mjs"))]
    print(
        f"script loaded for the board ({', '.join(first)}): "
        f"{sum(sizes[n][1] for n in first) / 1024:.1f} KB gzip; with the map (every script): "
        f"{sum(sizes[n][1] for n in scripts) / 1024:.1f} KB gzip"
    )
    print(
        f"choice of principal -> board rows shown, {len(shown)} runs: median "
        f"{statistics.median(shown):.0f} ms, max {max(shown):.0f} ms"
    )
    if paints:
        print(f"first contentful paint of the console: median {statistics.median(paints):.0f} ms")


if __name__ == "__main__":
    main()
