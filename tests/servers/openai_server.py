"""The OpenAI chat-completions wire format (non-streaming JSON) for scripted replies."""

from __future__ import annotations

from .scripted import Reply, Request, ScriptedServer


class OpenAIServer(ScriptedServer):
    """POST /v1/chat/completions: each queued reply answers one request."""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def completion(
    content: str,
    prompt_tokens: int = 1000,
    completion_tokens: int = 200,
    cached_tokens: int | None = None,
    finish_reason: str = "stop",
):
    """An assistant reply; ``cached_tokens`` adds ``prompt_tokens_details`` as OpenAI reports it."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}

    def reply(request: Request) -> Reply:
        return Reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1764460800,
                "model": request.body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            },
        )

    return reply


def error(status: int, detail: str = "scripted error", kind: str = "api_error", **headers) -> Reply:
    body = {"error": {"message": detail, "type": kind, "code": None}}
    return Reply(status, body, headers={k.replace("_", "-"): v for k, v in headers.items()})


def edit(path: str, search: str, replace: str) -> str:
    """One SEARCH/REPLACE block as a model writes it, fenced."""
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"
