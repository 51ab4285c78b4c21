"""Frames per second and latency of the serving tier, engine alone versus behind Ray Serve.

One frame = one chat completion: a camera frame (a PNG as a base64 data URI) and the findings
prompt, answered under the findings JSON schema at temperature 0 with up to 300 tokens: the
request the gateway sends. Each path is run once at each concurrency (1, 8 and 32 by default):

  (a) ``vllm-offline``: vLLM's offline ``LLM`` engine in this process, same model and engine
      settings as the config; a concurrency of C is C requests handed to ``LLM.chat`` at once, so
      a request's latency is its batch's time;
  (b) ``ray-serve``: the Ray Serve LLM app over HTTP (httpx, async, C requests in flight);
  (+) any other OpenAI-compatible endpoint given with ``--http NAME=URL`` (the gateway's path).

Run with the serving environment's Python from the checkout (it starts and stops the app itself
unless ``--base-url`` names a running one)::

    ENV=$(scripts/serving-env)
    PYTHONPATH=serving $ENV/bin/python bench/serving_engine.py
    PYTHONPATH=serving $ENV/bin/python bench/serving_engine.py --skip-offline \\
        --base-url http://127.0.0.1:8100 --http gateway=http://127.0.0.1:8000 \\
        --header "authorization=Bearer $TOKEN"

The table is printed and the figures written to ``bench/results/serving_engine-STAMP.json``.
With the tiny model's random weights the answers mean nothing but have the schema's longest shape,
so the numbers measure the pipeline (image processing, scheduling, constrained decoding, HTTP),
not a real model's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "serving"
if str(SERVING) not in sys.path:
    sys.path.insert(0, str(SERVING))

import httpx  # noqa: E402
from lighthouse_serving.app import CPU_ENGINE_DEFAULTS, engine_environment  # noqa: E402
from lighthouse_serving.config import ModelDeployment, ServingConfig  # noqa: E402
from lighthouse_serving.probe import free_port  # noqa: E402
from lighthouse_serving.tiny_model import CATEGORIES, is_tiny_model, write_tiny_model  # noqa: E402
from PIL import Image  # noqa: E402

FINDINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "findings": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                    "note": {"type": "string", "maxLength": 24},
                },
                "required": ["category", "note"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["findings"],
    "additionalProperties": False,
}
PROMPT = (
    "You are a city camera analyst. List what a crew must fix in this frame, as JSON: "
    "findings with a category and a short note."
)
MAX_TOKENS = 300


@dataclass
class Run:
    """One path at one concurrency."""

    path: str
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float] = field(repr=False)
    completion_tokens: int = 0
    failures: int = 0

    @property
    def frames_per_second(self) -> float:
        return (self.requests - self.failures) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 3),
            "latency_p50_ms": round(self.percentile(50) * 1000, 1),
            "latency_p99_ms": round(self.percentile(99) * 1000, 1),
            "completion_tokens": self.completion_tokens,
        }


def frame_data_uri() -> str:
    """A 320x240 stand-in camera frame (a road, a dark blotch), PNG in a data URI."""
    image = Image.new("RGB", (320, 240), (90, 90, 95))
    for x in range(140, 190):
        for y in range(150, 180):
            image.putpixel((x, y), (25, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def messages(image: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": PROMPT},
                {"type": "image_url", "image_url": {"url": image}},
            ],
        }
    ]


# -- (a) the engine alone ----------------------------------------------------------------


def bench_offline(
    model: ModelDeployment, levels: Sequence[tuple[int, int]], image: str
) -> list[Run]:
    """vLLM's offline engine with the model's own engine settings (the config's, plus CPU's)."""
    os.environ.update(engine_environment(model))
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    kwargs = dict(model.engine_kwargs())
    if model.accelerator.kind == "cpu":
        kwargs = {**CPU_ENGINE_DEFAULTS, **kwargs}
    started = time.perf_counter()
    llm = LLM(model=str(model.model_dir), **kwargs)
    print(f"vllm-offline: engine ready in {time.perf_counter() - started:.1f} s", flush=True)
    params = SamplingParams(
        temperature=0,
        max_tokens=MAX_TOKENS,
        structured_outputs=StructuredOutputsParams(json=FINDINGS_SCHEMA),
    )
    conversation = messages(image)
    llm.chat([conversation], params, use_tqdm=False)  # warm-up, not measured
    runs = []
    for concurrency, requests in levels:
        latencies: list[float] = []
        tokens = 0
        began = time.perf_counter()
        remaining = requests
        while remaining > 0:
            batch = min(concurrency, remaining)
            t0 = time.perf_counter()
            outputs = llm.chat([conversation] * batch, params, use_tqdm=False)
            elapsed = time.perf_counter() - t0
            latencies.extend([elapsed] * batch)
            tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
            remaining -= batch
        runs.append(
            Run(
                "vllm-offline",
                concurrency,
                requests,
                time.perf_counter() - began,
                latencies,
                tokens,
            )
        )
        print(f"  {runs[-1].summary()}", flush=True)
    del llm
    return runs


# -- (b) over HTTP -----------------------------------------------------------------------


async def bench_http(
    name: str,
    base_url: str,
    model: str,
    levels: Sequence[tuple[int, int]],
    image: str,
    headers: dict[str, str],
) -> list[Run]:
    """An OpenAI-compatible endpoint, C requests in flight at a time."""
    body = {
        "model": model,
        "messages": messages(image),
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "findings", "schema": FINDINGS_SCHEMA, "strict": True},
        },
    }
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=600, limits=limits
    ) as client:

        async def one() -> tuple[float, int, bool]:
            t0 = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=body)
            elapsed = time.perf_counter() - t0
            if response.status_code != 200:
                return elapsed, 0, False
            return elapsed, int(response.json()["usage"]["completion_tokens"]), True

        await one()  # warm-up, not measured
        runs = []
        for concurrency, requests in levels:
            gate = asyncio.Semaphore(concurrency)

            async def gated(
                task: Callable[[], Awaitable[tuple[float, int, bool]]] = one,
                gate: asyncio.Semaphore = gate,
            ) -> tuple[float, int, bool]:
                async with gate:
                    return await task()

            began = time.perf_counter()
            results = await asyncio.gather(*(gated() for _ in range(requests)))
            seconds = time.perf_counter() - began
            run = Run(
                name,
                concurrency,
                requests,
                seconds,
                [latency for latency, _tokens, ok in results if ok],
                sum(tokens for _latency, tokens, _ok in results),
                sum(1 for _latency, _tokens, ok in results if not ok),
            )
            runs.append(run)
            print(f"  {run.summary()}", flush=True)
    return runs


def start_serving(config_path: Path, run_dir: Path) -> str:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(SERVING))
    result = subprocess.run(
        [sys.executable, "-m", "lighthouse_serving", "up", "--config", str(config_path),
         "--port", str(port), "--run-dir", str(run_dir)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"`up` failed ({result.returncode})")
    return result.stdout.strip().splitlines()[-1]


def stop_serving(run_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(SERVING))
    subprocess.run(
        [sys.executable, "-m", "lighthouse_serving", "down", "--run-dir", str(run_dir)],
        env=env, check=False,
    )  # fmt: skip


# -- reporting ---------------------------------------------------------------------------


def table(runs: Sequence[Run]) -> str:
    header = f"{'path':<14} {'conc':>4} {'reqs':>5} {'frames/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'tok/req':>8} {'fail':>4}"
    lines = [header, "-" * len(header)]
    for run in runs:
        ok = run.requests - run.failures
        lines.append(
            f"{run.path:<14} {run.concurrency:>4} {run.requests:>5} "
            f"{run.frames_per_second:>9.2f} {run.percentile(50) * 1000:>9.0f} "
            f"{run.percentile(99) * 1000:>9.0f} {run.completion_tokens / max(ok, 1):>8.0f} "
            f"{run.failures:>4}"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    for name in ("vllm", "ray", "torch", "transformers"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            out[name] = "absent"
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, default=SERVING / "configs" / "cpu-tiny.yaml")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=0, help="per level (default: max(32, 4 x concurrency))"
    )
    parser.add_argument("--base-url", help="a running serving tier (else started and stopped)")
    parser.add_argument(
        "--secret-file",
        type=Path,
        help="that tier's callers' secret file (default: the started tier's)",
    )
    parser.add_argument("--skip-offline", action="store_true")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument(
        "--http", action="append", default=[], metavar="NAME=URL", help="another endpoint"
    )
    parser.add_argument(
        "--header", action="append", default=[], metavar="NAME=VALUE", help="for --http"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)

    config = ServingConfig.load(args.config, check_paths=False)
    model = config.models[0]
    if model.tiny_model and not is_tiny_model(model.model_dir, model.tiny_variant):
        write_tiny_model(model.model_dir, model.tiny_variant)
    levels = [(c, args.requests or max(32, 4 * c)) for c in args.concurrency]
    image = frame_data_uri()
    runs: list[Run] = []

    if not args.skip_offline:
        print("(a) vLLM offline engine", flush=True)
        runs += bench_offline(model, levels, image)
    if not args.skip_serve:
        print("(b) Ray Serve LLM over HTTP", flush=True)
        run_dir = ROOT / ".lighthouse" / "bench-serving"
        base_url = args.base_url or start_serving(args.config.resolve(), run_dir)
        try:
            secret_file = args.secret_file or run_dir / "caller-secret"
            caller = {"authorization": f"Bearer {secret_file.read_text().split()[0]}"}
            runs += asyncio.run(
                bench_http("ray-serve", base_url, model.name, levels, image, caller)
            )
        finally:
            if not args.base_url:
                stop_serving(run_dir)
    headers = dict(h.split("=", 1) for h in args.header)
    for target in args.http:
        name, url = target.split("=", 1)
        print(f"(+) {name} over HTTP", flush=True)
        runs += asyncio.run(bench_http(name, url, model.name, levels, image, headers))

    print()
    print(table(runs))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results / f"serving_engine-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "bench": "serving_engine",
                "when": stamp,
                "config": str(args.config),
                "model": model.name,
                "max_tokens": MAX_TOKENS,
                "environment": versions(),
                "runs": [run.summary() for run in runs],
                "latencies_s": [asdict(run)["latencies"] for run in runs],  # raw
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":  # vLLM starts processes that re-import the main module
    main()
