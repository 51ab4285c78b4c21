"""Evaluation sets and runs: a bureau's model officer registers frames people labelled, runs a
model version over them through the serving tier, and gets precision, recall and F1 per category
(with intervals) and the precision/recall curve, which must be scikit-learn's on the same answers.
A run that stopped resumes where it was; bad manifests are refused whole; the frames are held,
never analysed live, and seen only by whoever may see the bureau's frames."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support

from api.domain.evaluation import Scored, curve, f1_interval, figures
from api.vision import images
from tests.support import DatabaseUnderTest, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.conftest import CameraFactory
from tests.vision.fake_serving import FakeServing, Said, Script
from tests.vision.images import photo

REPOSITORY = Path(__file__).resolve().parents[2]
SETS = """
{ evaluationSets { name version frames categories
    runs { id answered categories { category precision recall f1 curve(points: 3) { threshold }
    } } } }
"""
RUN = "query($id: ID!) { evaluationRun(id: $id) { id } }"
MODEL = "lighthouse-tiny-vlm"
CATEGORIES = ("POTHOLE", "ILLEGAL_PARKING")


def sklearn_figures(items: list[Scored], category: str, threshold: float) -> dict[str, Any]:
    truth = [category in item.labels for item in items]
    scores = [item.scores.get(category, 0.0) if item.usable else 0.0 for item in items]
    predicted = [s > 0 and s >= threshold for s in scores]
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, average="binary", zero_division=0
    )
    curve_p, curve_r, thresholds = precision_recall_curve(truth, scores)
    points = [
        (float(t), float(p), float(r))
        for t, p, r in zip(thresholds, curve_p[:-1], curve_r[:-1], strict=True)
        if t > 0
    ]
    return {"precision": precision, "recall": recall, "f1": f1, "curve": points}


def findings_of(value: Any) -> dict[str, float]:
    """A jsonb column as the owner's connection gives it (text, without the pool's codec)."""
    return dict(json.loads(value) if isinstance(value, str) else value)


def flat(points: list[Any]) -> list[float]:
    return [float(value) for point in points for value in point]


@pytest.mark.parametrize("seed", range(8))
def test_the_figures_are_scikit_learns(seed: int) -> None:
    rng = random.Random(seed)
    items = [
        Scored(
            labels=frozenset(c for c in CATEGORIES if rng.random() < 0.4),
            scores={c: round(rng.random(), 2) for c in CATEGORIES if rng.random() < 0.6},
            usable=rng.random() > 0.05,
        )
        for _ in range(rng.randrange(5, 200))
    ]
    for category in CATEGORIES:
        threshold = rng.choice((0.3, 0.5, 0.7))
        ours = figures(items, category, threshold)
        theirs = sklearn_figures(items, category, threshold)
        assert (ours.precision or 0.0) == pytest.approx(theirs["precision"])
        assert (ours.recall or 0.0) == pytest.approx(theirs["recall"])
        assert (ours.f1 or 0.0) == pytest.approx(theirs["f1"])
        ours_curve = [(p.threshold, p.precision, p.recall) for p in curve(items, category)]
        assert len(ours_curve) == len(theirs["curve"])
        assert flat(ours_curve) == pytest.approx(flat(theirs["curve"]))
        interval = ours.f1_interval
        if ours.f1 is not None:
            assert interval is not None and interval.low <= ours.f1 <= interval.high


def test_the_f1_interval_narrows_with_more_frames() -> None:
    small = f1_interval(8, 2, 3, 40)
    large = f1_interval(800, 200, 300, 4000)
    assert small is not None and large is not None
    assert large.high - large.low < (small.high - small.low) / 5
    assert f1_interval(0, 0, 0, 10) is None


async def models(
    database: DatabaseUnderTest, serving_url: str, frames_dir: Path, *args: str
) -> tuple[int, str, str]:
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_SERVING_URL": serving_url,
        "LIGHTHOUSE_SERVING_RETRIES": "0",
        "LIGHTHOUSE_VISION_FRAMES_DIR": str(frames_dir),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "models", *args, cwd=REPOSITORY, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), " ".join(err.decode().split())


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServing]:
    async with FakeServing(MODEL) as serving:
        yield serving


def labelled_frames(tmp_path: Path, camera: str, count: int) -> tuple[Path, list[dict[str, Any]]]:
    """``count`` images with labels and what the fake model will say of each, and their
    manifest (CSV)."""
    rng = random.Random(20261206)
    frames = []
    for n in range(count):
        data = photo(n, kind="PNG")
        (tmp_path / f"frame-{n}.png").write_bytes(data)
        stored = images.clean(data, max_bytes=10**7, max_pixels=10**7)
        frames.append(
            {
                "file": f"frame-{n}.png",
                "digest": stored.sha256,
                "labels": sorted(c for c in CATEGORIES if rng.random() < 0.45),
                "said": [Said(c, "seen", rng.choice((0.2, 0.4, 0.6, 0.8, 0.95)))
                         for c in CATEGORIES if rng.random() < 0.6],
            }
        )  # fmt: skip
    manifest = tmp_path / "set.csv"
    with manifest.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "camera", "captured_at", "categories"])
        for frame in frames:
            writer.writerow(
                [frame["file"], camera, "2026-11-30T08:00:00+08:00", ";".join(frame["labels"])]
            )
    return manifest, frames


async def register_set(
    database: DatabaseUnderTest,
    serving_url: str,
    frames_dir: Path,
    tmp_path: Path,
    camera: str,
    name: str,
    count: int,
    *options: str,
) -> list[dict[str, Any]]:
    """``count`` labelled frames of ``camera`` registered as the Police's set ``name`` through
    the command line; the frames (as ``labelled_frames`` gives them)."""
    manifest, frames = labelled_frames(tmp_path, camera, count)
    code, _, said = await models(
        database, serving_url, frames_dir, "sets", "add", name, "--manifest", str(manifest),
        "--bureau", "POLICE", *options,
    )  # fmt: skip
    assert code == 0 and f"{name} v1 (POLICE): {count} frames" in said, said
    return frames


def police_model_officer(tokens: TokenFactory) -> str:
    """A token of the Police's model officer (models:admin)."""
    return tokens.custom(
        subject="police-model-officer", kind="staff", bureau="POLICE",
        scopes=["incidents:read", "models:admin"],
    )  # fmt: skip


@pytest.mark.db
async def test_a_run_resumes_and_its_figures_are_scikit_learns_on_its_answers(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    database: DatabaseUnderTest,
    fake: FakeServing,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    frames_dir: Path,
    tmp_path: Path,
) -> None:
    camera = await cameras("POLICE")
    frames = await register_set(
        database, fake.url, frames_dir, tmp_path, camera.code, "potholes-2026", 16,
        "--description", "hand-labelled, November",
    )  # fmt: skip
    # Held: stored like any frame, never queued for live analysis.
    held = await owner.fetch("SELECT status FROM frame WHERE status = 'HELD'")
    assert len(held) == 16
    assert await owner.fetchval("SELECT count(*) FROM pgqueuer") == 0

    # The tier stops answering at the tenth frame (in the digests' order, one at a time).
    for frame in frames:
        fake.by_image[frame["digest"]] = Script(findings=frame["said"])
    ordered = sorted(frames, key=lambda f: f["digest"])
    fake.by_image[ordered[9]["digest"]] = Script(failures=[503] * 100)
    run = ("evaluate", MODEL, "2026.12", "--set", "potholes-2026", "--bureau", "POLICE")
    code, _, said = await models(database, fake.url, frames_dir, *run, "--concurrency", "1")
    assert code == 3 and "run the same command again to resume" in said, said
    assert await owner.fetchval("SELECT count(*) FROM evaluation_answer") == 9
    # Again, with the tier back: only the frames not answered are asked.
    fake.by_image[ordered[9]["digest"]] = Script(findings=ordered[9]["said"])
    fake.requests.clear()
    code, out, said = await models(database, fake.url, frames_dir, *run, "--json")
    assert code == 0, said
    assert len(fake.requests) == 7
    assert await owner.fetchval("SELECT count(*) FROM evaluation_run") == 1
    report = {row["category"]: row for row in json.loads(out)}

    # The oracle: scikit-learn over the answers the run recorded and the labels.
    rows = await owner.fetch(
        "SELECT a.outcome, a.findings, i.categories FROM evaluation_answer a"
        " JOIN evaluation_item i ON i.frame_sha256 = a.frame_sha256"
    )
    items = [
        Scored(frozenset(r["categories"]), findings_of(r["findings"]), r["outcome"] != "UNUSABLE")
        for r in rows
    ]
    assert len(items) == 16
    for category in sorted({c for f in frames for c in f["labels"]}):
        theirs = sklearn_figures(items, category, 0.5)
        ours = report[category]
        assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-4)
        assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-4)
        assert ours["f1"] == pytest.approx(theirs["f1"], abs=1e-4)
        assert len(ours["curve"]) == len(theirs["curve"])
        assert flat(ours["curve"]) == pytest.approx(flat(theirs["curve"]), abs=1e-6)
        assert ours["precision_low"] <= ours["precision"] <= ours["precision_high"]
    # In the graph, for whoever may see the bureau's frames; nothing for another bureau.
    police = GraphQLClient(http, tokens.named("police-viewer"))
    data = await police.data(SETS)
    (listed,) = data["evaluationSets"]
    assert (listed["name"], listed["version"], listed["frames"]) == ("potholes-2026", 1, 16)
    (graph_run,) = listed["runs"]
    assert graph_run["answered"] == 16
    for item in graph_run["categories"]:
        assert item["precision"] == pytest.approx(report[item["category"]]["precision"], abs=1e-4)
        # Thinned to the points asked for, the lowest and highest kept.
        full = [point[0] for point in report[item["category"]]["curve"]]
        thinned = [point["threshold"] for point in item["curve"]]
        assert len(thinned) == min(3, len(full)) and thinned[0] == full[0]
        assert thinned[-1] == full[-1]
    too_many = await police.execute("{ evaluationSets(last: 1000) { name } }")
    assert "last: must be 1 to 100" in str(too_many.get("errors")), too_many
    other = GraphQLClient(http, tokens.named("pwb-viewer"))
    assert (await other.data(SETS))["evaluationSets"] == []
    assert (await other.data(RUN, {"id": graph_run["id"]}))["evaluationRun"] is None
    # Audited: who registered and ran what.
    operations = await owner.fetch(
        "SELECT DISTINCT operation FROM audit_record WHERE subject LIKE 'cli:%'"
        " AND operation LIKE 'models%'"
    )
    assert {"models sets add", "models evaluate"} <= {r["operation"] for r in operations}


@pytest.mark.db
async def test_a_bad_manifest_is_refused_whole(
    database: DatabaseUnderTest,
    fake: FakeServing,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    frames_dir: Path,
    tmp_path: Path,
) -> None:
    camera = await cameras("POLICE")
    theirs = await cameras("PUBLIC_WORKS")
    (tmp_path / "ok.png").write_bytes(photo(1, kind="PNG"))
    (tmp_path / "text.png").write_text("not an image")
    lines = [
        {"file": "ok.png", "camera": camera.code, "captured_at": "2026-11-30T08:00:00+08:00",
         "categories": ["POTHOLE"]},
        {"file": "missing.png", "camera": camera.code, "captured_at": "2026-11-30T08:00:00+08:00"},
        {"file": "text.png", "camera": camera.code, "captured_at": "2026-11-30T08:00:00+08:00"},
        {"file": "ok.png", "camera": theirs.code, "captured_at": "2026-11-30T08:00:00+08:00"},
        {"file": "ok.png", "camera": camera.code, "captured_at": "2026-11-30T08:00:00",
         "categories": ["POTHOLE"]},
        {"file": "ok.png", "camera": camera.code, "captured_at": "2026-11-30T08:00:00+08:00",
         "categories": ["UFO"]},
    ]  # fmt: skip
    manifest = tmp_path / "set.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    code, _, said = await models(
        database, fake.url, frames_dir, "sets", "add", "bad", "--manifest", str(manifest),
        "--bureau", "POLICE",
    )  # fmt: skip
    assert code == 2, said
    for expected in ("line 5: captured_at", "line 7: not JSON", "nothing was registered"):
        assert expected in said, said
    # The lines that parse are checked in turn: fixed the two above, the others are named.
    manifest.write_text("\n".join(json.dumps(line) for line in lines[:4] + lines[5:]) + "\n")
    code, _, said = await models(
        database, fake.url, frames_dir, "sets", "add", "bad", "--manifest", str(manifest),
        "--bureau", "POLICE",
    )  # fmt: skip
    assert code == 2, said
    for expected in ("line 2: cannot read missing.png", "line 3: text.png",
                     "line 4: no camera", "line 5: unknown categories UFO"):  # fmt: skip
        assert expected in said, said
    for table in ("evaluation_set", "evaluation_item"):
        assert await owner.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await owner.fetchval("SELECT count(*) FROM frame") == 0
    code, _, said = await models(
        database, fake.url, frames_dir, "sets", "add", "Bad Name", "--manifest", str(manifest),
        "--bureau", "POLICE",
    )  # fmt: skip
    assert code == 2 and "name:" in said, said
    code, _, said = await models(
        database, fake.url, frames_dir, "evaluate", MODEL, "1", "--set", "nothing",
        "--bureau", "POLICE",
    )  # fmt: skip
    assert code == 2 and "EvaluationSet nothing does not exist" in said, said
