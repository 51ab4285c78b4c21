"""The real app (Ray Serve LLM around vLLM, on CPU, with the tiny VLM) over its HTTP API.

What the gateway relies on: the model list, OpenAI-shaped chat completions with an image,
JSON-schema structured outputs, per-token log-probabilities, determinism at temperature 0,
streaming with a final usage chunk, and a `down` that leaves no process behind. The tiny model's
weights are random, so these tests check mechanics, never what it says.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest

from lighthouse_serving.local import SERVING_PHASE, LocalInstance, instance_processes
from lighthouse_serving.tiny_model import CATEGORIES

from .conftest import ServedApp, png_data_uri, serving_command

pytestmark = pytest.mark.serving

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


def _messages(image: str | None = None) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You report what a city crew must fix. Answer in JSON."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What does this camera frame show?"},
                {"type": "image_url", "image_url": {"url": image or png_data_uri()}},
            ],
        },
    ]


def _findings_request(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": _messages(),
        "max_tokens": 300,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "findings", "schema": FINDINGS_SCHEMA, "strict": True},
        },
        **extra,
    }


def _chat(served: ServedApp, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{served.base_url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_model_list_names_the_model(served: ServedApp) -> None:
    response = httpx.get(f"{served.base_url}/v1/models", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == [served.model]
    print(f"\n`up` took {served.startup_seconds:.0f} s to answer /v1/models")


def test_up_returns_once_the_engine_runs_not_when_the_ingress_first_answers(
    served: ServedApp,
) -> None:
    # The ingress lists the configured models while the engine is still starting; `up` must
    # wait for Serve to report the application running, or the first call waits half a minute.
    assert served.phase_when_up.startswith(SERVING_PHASE), served.phase_when_up


def test_a_chat_completion_with_an_image(served: ServedApp) -> None:
    answer = _chat(
        served,
        {"model": served.model, "messages": _messages(), "max_tokens": 16, "temperature": 0},
    )
    assert answer["object"] == "chat.completion"
    assert answer["model"] == served.model
    assert answer["id"]
    (choice,) = answer["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"}
    usage = answer["usage"]
    assert 1 <= usage["completion_tokens"] <= 16
    # The image became one token per 14-pixel patch of the 56x56 input: 16 in the prompt.
    text_only = _chat(
        served,
        {
            "model": served.model,
            "messages": [_messages()[0], {"role": "user", "content": "x"}],
            "max_tokens": 1,
        },
    )
    assert usage["prompt_tokens"] >= text_only["usage"]["prompt_tokens"] + 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_an_unknown_model_is_refused_by_name(served: ServedApp) -> None:
    """Ray Serve LLM's ingress answers 404 with FastAPI's ``{"detail": ...}`` (not an OpenAI
    error object): the gateway maps it to its own error."""
    response = httpx.post(
        f"{served.base_url}/v1/chat/completions",
        json={"model": "no-such-model", "messages": _messages(), "max_tokens": 4},
        timeout=60,
    )
    assert response.status_code == 404
    assert "no-such-model" in response.json()["detail"]


def test_structured_output_follows_the_json_schema(served: ServedApp) -> None:
    answer = _chat(served, _findings_request(served.model))
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "stop", answer  # closed before max_tokens
    document = json.loads(choice["message"]["content"])
    jsonschema.validate(document, FINDINGS_SCHEMA)
    print(f"\nstructured answer: {choice['message']['content']}")


def test_logprobs_come_back_per_token(served: ServedApp) -> None:
    answer = _chat(served, _findings_request(served.model, logprobs=True, top_logprobs=5))
    (choice,) = answer["choices"]
    content = choice["logprobs"]["content"]
    assert len(content) == answer["usage"]["completion_tokens"]
    text = "".join(entry["token"] for entry in content)
    assert text.startswith(choice["message"]["content"])  # then the end token, if any
    for entry in content:
        assert isinstance(entry["token"], str)
        assert entry["logprob"] <= 0
        assert len(entry["top_logprobs"]) == 5
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
    jsonschema.validate(json.loads(choice["message"]["content"]), FINDINGS_SCHEMA)
    print(f"\nlogprobs: {len(content)} tokens x 5 alternatives; first: {content[0]}")


def test_the_same_request_gives_the_same_answer(served: ServedApp) -> None:
    body = _findings_request(served.model, logprobs=True, top_logprobs=2)
    first, second = _chat(served, body), _chat(served, body)
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    assert [t["token"] for t in first["choices"][0]["logprobs"]["content"]] == [
        t["token"] for t in second["choices"][0]["logprobs"]["content"]
    ]
    # Random weights ignore the picture: another image, the same answer (ENVIRONMENT.md).
    other = dict(body, messages=_messages(png_data_uri((10, 120, 200))))
    assert _chat(served, other)["choices"][0]["message"] == first["choices"][0]["message"]


def test_streaming_ends_with_a_usage_chunk(served: ServedApp) -> None:
    body = _findings_request(served.model, stream=True, stream_options={"include_usage": True})
    chunks: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", f"{served.base_url}/v1/chat/completions", json=body, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    jsonschema.validate(json.loads(text), FINDINGS_SCHEMA)
    final = chunks[-1]
    assert final["choices"] == []
    assert final["usage"]["completion_tokens"] > 0
    assert all(chunk.get("usage") is None for chunk in chunks[:-1])
    assert (
        text == _chat(served, _findings_request(served.model))["choices"][0]["message"]["content"]
    )


def test_status_reports_the_running_app(served: ServedApp) -> None:
    result = serving_command("status", "--run-dir", str(served.run_dir), "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["answers"] and status["models"] == [served.model]
    assert status["base_url"] == served.base_url


def test_up_again_reuses_the_running_instance(served: ServedApp) -> None:
    state = LocalInstance(served.run_dir).state()
    assert state is not None
    result = serving_command(
        "up", "--config", state.config, "--port", str(state.port), "--run-dir",
        str(served.run_dir), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == served.base_url
    assert "reusing" in result.stderr
    clash = serving_command(
        "up", "--config", state.config, "--port", str(state.port + 1), "--run-dir",
        str(served.run_dir), timeout=120,
    )  # fmt: skip
    assert clash.returncode == 1
    assert "already running" in clash.stderr and "down" in clash.stderr


def test_zz_down_leaves_no_process_behind(served: ServedApp) -> None:
    """Last in the module (pytest keeps file order): it stops the session's app."""
    instance = LocalInstance(served.run_dir)
    state = instance.state()
    assert state is not None
    assert list(instance_processes(state.pid, state.ray_temp_dir)), "nothing was running?"
    result = serving_command("down", "--run-dir", str(served.run_dir), timeout=300)
    assert result.returncode == 0, result.stderr
    assert list(instance_processes(state.pid, state.ray_temp_dir)) == []
    assert serving_command("status", "--run-dir", str(served.run_dir), timeout=60).returncode == 1
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{served.base_url}/v1/models", timeout=5)
