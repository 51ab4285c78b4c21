"""The real app (Ray Serve LLM around vLLM, on CPU, with the tiny VLM) over its HTTP API.

What the gateway relies on: the model list, OpenAI-shaped chat completions with an image,
JSON-schema structured outputs, per-token log-probabilities, determinism at temperature 0,
streaming with a final usage chunk, and a `down` that leaves no process behind. The tiny model's
weights are random, so these tests check mechanics, never what it says.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import psutil
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
    response = httpx.post(
        f"{served.base_url}/v1/chat/completions", json=body, headers=served.caller, timeout=120
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_model_list_names_the_model(served: ServedApp) -> None:
    response = httpx.get(f"{served.base_url}/v1/models", headers=served.caller, timeout=30)
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
        headers=served.caller,
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
        "POST",
        f"{served.base_url}/v1/chat/completions",
        json=body,
        headers=served.caller,
        timeout=120,
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


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/lighthouse-tiny-vlm"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/tokenize"),
        ("GET", "/docs"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer not-the-secret-of-this-tier-at-all", "Basic eDp5"]
)
def test_only_the_tiers_own_callers_are_answered(
    served: ServedApp, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    body = {"model": served.model, "messages": _messages(), "max_tokens": 4}
    response = httpx.request(
        method, served.base_url + path, json=body if method == "POST" else None,
        headers=headers, timeout=30,
    )  # fmt: skip
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert served.model not in response.text  # nothing about what the tier serves


def test_a_rotated_out_secret_is_refused_and_its_successor_answered(served: ServedApp) -> None:
    models = f"{served.base_url}/v1/models"
    original = served.secret_file.read_text()
    old = served.caller
    try:
        added = serving_command("secret", "add", str(served.secret_file), timeout=60)
        assert added.returncode == 0, added.stderr
        new = served.caller
        assert new != old
        # While both are in the file, both are accepted: callers switch at their own pace.
        assert httpx.get(models, headers=old, timeout=30).status_code == 200
        assert httpx.get(models, headers=new, timeout=30).status_code == 200

        retired = serving_command("secret", "retire", str(served.secret_file), timeout=60)
        assert retired.returncode == 0, retired.stderr
        stale = httpx.get(models, headers=old, timeout=30)
        assert stale.status_code == 401
        assert stale.json()["error"]["code"] == "invalid_credential"
        assert httpx.get(models, headers=new, timeout=30).status_code == 200
        assert oct(served.secret_file.stat().st_mode & 0o777) == "0o600"
    finally:
        served.secret_file.write_text(original)


def test_ray_is_reachable_only_through_the_api_address(served: ServedApp) -> None:
    """Ray listens on every interface of the network it is in, so the instance runs in a
    private network namespace whose only interface is the loopback. In the machine's own
    network the instance has exactly one listening socket: the API's, on loopback (opened by
    the supervisor before it left, and relayed inside)."""
    state = LocalInstance(served.run_dir).state()
    assert state is not None
    processes = set(instance_processes(state.pid, state.ray_temp_dir))
    assert len(processes) > 5, processes  # Ray's GCS, raylet, workers, Serve, the engine

    networks = set()
    for pid in processes:
        with contextlib.suppress(FileNotFoundError):  # a worker that just ended
            networks.add(os.readlink(f"/proc/{pid}/ns/net"))
    (private,) = networks
    assert private != os.readlink("/proc/self/ns/net")
    interfaces = Path(f"/proc/{state.pid}/net/dev").read_text().splitlines()[2:]
    assert [line.split(":")[0].strip() for line in interfaces] == ["lo"]

    # This process is in the machine's network: these are that network's listening sockets.
    in_the_machines_network = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.pid in processes
    }
    assert in_the_machines_network == {("127.0.0.1", state.port)}

    # And Ray, inside, does listen on every interface of its network (read from that
    # network's own socket tables): the namespace is what keeps it in. This notices the day
    # Ray binds loopback by itself.
    inside = _listening_hosts(state.pid)
    assert {"0.0.0.0", "::"} & inside, inside


def _listening_hosts(pid: int) -> set[str]:
    """The local addresses of the listening TCP sockets of ``pid``'s network namespace."""
    hosts = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            if state != "0A":  # TCP_LISTEN
                continue
            address = bytes.fromhex(local.split(":")[0])
            # /proc prints each 32-bit word in the host's byte order (little-endian here).
            words = b"".join(address[i : i + 4][::-1] for i in range(0, width // 2, 4))
            hosts.add(str(ipaddress.ip_address(words)))
    return hosts


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
