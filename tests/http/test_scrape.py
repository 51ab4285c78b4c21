"""Who may read /metrics: holders of a scrape secret when a secret file is set; otherwise this
machine's own callers, and in production no one."""

from __future__ import annotations

from pathlib import Path

import httpx

from api.app import create_app
from api.graph.domains import DOMAINS
from api.http.scrape import Scrape, scrape_verdict
from api.settings import HttpSettings
from tests.support import DatabaseUnderTest, InProcessGateway, free_port, in_process_settings

FIRST, SECOND = "scrape-secret-" + "a" * 32, "scrape-secret-" + "b" * 32


def scope(address: str, authorization: str | None = None) -> dict[str, object]:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return {"type": "http", "client": (address, 40000), "headers": headers}


def test_without_a_secret_file_only_this_machine_scrapes_and_in_production_no_one() -> None:
    for address in ("127.0.0.1", "127.8.9.10", "::1"):
        assert scrape_verdict(scope(address), None, production=False) is Scrape.ALLOWED
        assert scrape_verdict(scope(address), None, production=True) is Scrape.ELSEWHERE
    for address in ("192.0.2.9", "10.0.0.1", "fd00::2", "unknown"):
        assert scrape_verdict(scope(address), None, production=False) is Scrape.ELSEWHERE


def test_with_a_secret_file_a_secret_of_it_is_needed_from_anywhere(tmp_path: Path) -> None:
    secrets = tmp_path / "scrape"
    secrets.write_text(f"{FIRST}\n{SECOND}\n")
    for address in ("127.0.0.1", "192.0.2.9"):
        for given in (f"Bearer {FIRST}", f"bearer {SECOND}"):
            assert scrape_verdict(scope(address, given), secrets, True) is Scrape.ALLOWED
        for given in (None, "Bearer nope", f"Basic {FIRST}", f"Bearer {FIRST[:-1]}", "Bearer "):
            verdict = scrape_verdict(scope(address, given), secrets, False)
            assert verdict is Scrape.NO_CREDENTIAL, given
    # A file that cannot be read, or is not a list of secrets, opens nothing.
    for broken in ("", "\n\n", "\n".join(f"s{n}" for n in range(9))):
        secrets.write_text(broken)
        assert scrape_verdict(scope("127.0.0.1", f"Bearer {FIRST}"), secrets, False) is (
            Scrape.UNREADABLE
        )
    secrets.unlink()
    assert scrape_verdict(scope("127.0.0.1", f"Bearer {FIRST}"), secrets, False) is (
        Scrape.UNREADABLE
    )


async def test_a_gateway_with_a_secret_file_serves_metrics_to_its_holders(
    database: DatabaseUnderTest, tmp_path: Path
) -> None:
    secrets = tmp_path / "scrape"
    secrets.write_text(FIRST + "\n")
    port = free_port()
    http_settings = HttpSettings(metrics_secret_file=secrets)
    settings = in_process_settings(database, f"http://127.0.0.1:{port}", pool_max_size=2,
                                   http=http_settings)  # fmt: skip
    async with (
        InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as gateway,
        httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http,
    ):
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="lighthouse-metrics"'
        assert "lighthouse_" not in refused.text
        served = await http.get("/metrics", headers={"Authorization": f"Bearer {FIRST}"})
        assert served.status_code == 200 and "lighthouse_http_requests_total" in served.text
        # Rotation: the new secret added, then the old one removed; no restart.
        secrets.write_text(f"{FIRST}\n{SECOND}\n")
        both = [await http.get("/metrics", headers={"Authorization": f"Bearer {s}"})
                for s in (FIRST, SECOND)]  # fmt: skip
        assert [r.status_code for r in both] == [200, 200]
        secrets.write_text(SECOND + "\n")
        old = await http.get("/metrics", headers={"Authorization": f"Bearer {FIRST}"})
        assert old.status_code == 401
        secrets.unlink()
        gone = await http.get("/metrics", headers={"Authorization": f"Bearer {SECOND}"})
        assert gone.status_code == 503 and "lighthouse_" not in gone.text
