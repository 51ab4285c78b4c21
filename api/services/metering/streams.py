"""What a streamed answer has delivered, counted as its chunks are relayed, and what it is charged.

The gateway asks the tier for the usage chunk at the end (``include_usage``) and for each
chunk's running usage (``continuous_usage_stats``: vLLM reports, on every chunk, the prompt's
tokens and the answer's tokens so far). A stream is charged:

- read to its end: the usage the tier reports in its last chunk (the whole answer was relayed
  before it, so a client that leaves once it has the answer pays for it all);
- left by its client, or broken off by the tier (or by the gateway's own timeout on it), once a
  token of the answer was delivered: the prompt, and the tokens delivered — the running usage
  of the last chunk sent to the client. A tier that reports no running usage has each chunk's
  tokens counted instead (its log-probabilities' tokens if it sends them, else one token per
  chunk with content, as vLLM streams them) and the prompt charged at the bound reserved for
  it;
- with no token delivered: nothing.

Never more than was reserved (the ledger caps every charge). The running usage is for the
gateway: it is taken out of the chunks the caller gets, who gets the final usage chunk only if
it asked for it (``stream_options.include_usage``).
"""

from __future__ import annotations

from typing import Any

import orjson

from api.domain.licensing import Cost
from api.services.metering.calls import reported_use
from api.services.metering.meter import Admission


class StreamBroken(Exception):
    """The tier sent a chunk that is not JSON: its answer cannot be relayed or counted."""


class StreamTally:
    """One stream's chunks as they pass: ``relay`` each line from the tier, ``sent`` once the
    line it returned reached the client, ``charge`` when the stream has ended."""

    def __init__(self, admission: Admission, *, usage_for_caller: bool) -> None:
        self._admission = admission
        self._usage_for_caller = usage_for_caller
        self._prompt: int | None = None  # the prompt's tokens, as the tier reported them
        self._pending = 0  # the answer's tokens once the line being sent is delivered
        self.delivered = 0  # the answer's tokens in the chunks the client was sent
        self.final: Cost | None = None  # the tier's usage at the end of the answer

    def relay(self, line: str) -> bytes | None:
        """The tier's ``line`` as the client gets it (None: not for the client), noting what it
        reports and carries."""
        if not line.startswith("data: {"):
            return (line + "\n").encode()  # blank lines, [DONE], comments: passed on
        try:
            chunk = orjson.loads(line[6:])
        except orjson.JSONDecodeError:
            raise StreamBroken("the tier sent a chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            raise StreamBroken("the tier sent a chunk that is not an object")
        choices = chunk.get("choices")
        if not choices:
            used = reported_use(chunk.get("usage"), self._admission)
            if used is not None:  # the usage chunk at the end
                self.final = used
                return (line + "\n").encode() if self._usage_for_caller else None
            return (line + "\n").encode()
        used = reported_use(chunk.get("usage"), self._admission, quiet=True)
        if used is not None:  # the running usage: the prompt, and the answer so far
            self._prompt = used.input_tokens
            self._pending = max(self.delivered, used.output_tokens)
        else:
            self._pending = self.delivered + _tokens(choices)
        if chunk.get("usage") is not None:
            del chunk["usage"]
            return b"data: " + orjson.dumps(chunk) + b"\n"
        return (line + "\n").encode()

    def sent(self) -> None:
        """The line ``relay`` returned last reached the client."""
        self.delivered = self._pending

    def charge(self) -> Cost | None:
        """What the stream is charged now that it has ended, however it ended (None:
        nothing)."""
        if self.final is not None:
            return self.final
        if self.delivered == 0:
            return None
        reserved = self._admission.reserved
        prompt = self._prompt if self._prompt is not None else reserved.input_tokens
        return Cost(prompt, self.delivered, reserved.images)


def _tokens(choices: object) -> int:
    """The answer's tokens in a chunk without running usage: its log-probabilities' tokens if
    it carries them, else one per choice whose delta carries content."""
    if not isinstance(choices, list):
        return 0
    tokens = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        logprobs = choice.get("logprobs")
        counted = logprobs.get("content") if isinstance(logprobs, dict) else None
        if isinstance(counted, list) and counted:
            tokens += len(counted)
        elif _carries_content(choice.get("delta")):
            tokens += 1
    return tokens


def _carries_content(delta: Any) -> bool:
    if not isinstance(delta, dict):
        return False
    return any(delta.get(key) for key in ("content", "reasoning_content", "refusal", "tool_calls"))
