"""The Anthropic Messages API wire format (JSON and server-sent events) for scripted replies."""

from __future__ import annotations

import itertools
import json

from .scripted import Reply, Request, ScriptedServer

_ids = itertools.count(1)


class MessagesServer(ScriptedServer):
    """POST /v1/messages: each queued reply answers one request."""


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def tool_use(name: str, arguments: object, raw: str | None = None) -> dict:
    """A tool call; ``raw`` streams that exact (possibly malformed) JSON as its input."""
    block = {"type": "tool_use", "id": f"toolu_{next(_ids):04d}", "name": name, "input": arguments}
    if raw is not None:
        block["_raw"] = raw
    return block


def message(
    *blocks: dict,
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_write: int = 0,
    cache_read: int = 0,
):
    """An assistant turn, answered as JSON or as an event stream, as the request asks."""
    stop_reason = stop_reason or ("tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn")
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }

    def reply(request: Request) -> Reply:
        body = {
            "id": f"msg_{next(_ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": request.body["model"],
            "content": [{k: v for k, v in b.items() if k != "_raw"} for b in blocks],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not request.body.get("stream"):
            return Reply(200, body)
        return Reply(200, events=_events(body, blocks, usage))

    return reply


def _events(body: dict, blocks: tuple[dict, ...], usage: dict) -> list[tuple[str, object]]:
    start = {**body, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, object]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {
                "type": "input_json_delta",
                "partial_json": block.get("_raw", json.dumps(block["input"])),
            }
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def error(status: int, kind: str, detail: str = "scripted error", **headers: str) -> Reply:
    """An HTTP error with the API's error body, e.g. ``error(529, "overloaded_error")``."""
    body = {"type": "error", "error": {"type": kind, "message": detail}}
    return Reply(status, body, headers={k.replace("_", "-"): v for k, v in headers.items()})


def stream_error(kind: str, detail: str = "scripted error"):
    """A stream that starts, then reports an error event (as the API does when overloaded)."""

    def reply(request: Request) -> Reply:
        started = message(text("…"))(request).events[:2]
        failure = {"type": "error", "error": {"type": kind, "message": detail}}
        return Reply(200, events=[*started, ("error", failure)])

    return reply


def cut_stream(*blocks: dict):
    """A stream whose connection drops in the middle of the first content block."""

    def reply(request: Request) -> Reply:
        full = message(*blocks)(request)
        return Reply(200, events=full.events, cut_after=4)

    return reply
