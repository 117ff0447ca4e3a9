"""The ``openai`` agent: any OpenAI-compatible chat-completions server, editing by SEARCH/REPLACE.

For local models (Ollama, vLLM, llama.cpp server) and others without reliable tool use: the model
answers in text, and the harness parses and applies the edit blocks. Blocks that fail to apply
are sent back once per turn, with the files as they are now, for the model to correct; a block
that fails a second time ends the proposal (resending it would only spend tokens).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from ..agent import Agent, AgentOptions, Brief, Proposal
from ..hookspecs import hookimpl
from .edits import FORMAT_HELP, apply_edit_blocks, parse_edit_blocks
from .files import EditableFiles
from .prompt import RULES, file_context, one_line, split_brief
from .retry import CONNECT_SECONDS, Backoff, TransientError, call_with_retries, http_failure
from .usage import Usage

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "http://localhost:11434/v1"  # Ollama's OpenAI-compatible endpoint
DEFAULT_MODEL = "qwen2.5-coder:7b"
SERVICE = "OpenAI-compatible API"
KEY_ENV = "OPENAI_API_KEY"
DESCRIPTION = re.compile(r"^\s*DESCRIPTION:\s*(\S.*)$", re.MULTILINE)
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)  # reasoning models' drafts: not edits

INSTRUCTIONS = f"""{RULES}
{FORMAT_HELP}
Start your reply with one line "DESCRIPTION: <the idea in one line>", then the blocks."""


class OpenAIAgent(Agent):
    name = "openai"
    description = "OpenAI-compatible chat completions (Ollama, vLLM, ...), edits as SEARCH/REPLACE."

    def __init__(self, options: AgentOptions | None = None):
        super().__init__(options)
        self.model = self.options.model or DEFAULT_MODEL
        self.base_url = (self.options.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.backoff = Backoff.from_options(self.options)

    def announce(self) -> str:
        return f"agent: openai, model {self.model} at {self.base_url}"

    def propose(self, brief: Brief) -> Proposal:
        import httpx

        files = EditableFiles(brief.root, brief.editable, brief.protected)
        messages = self.prompt(brief, files)
        usage = Usage()
        description, notes, failed_before = "", [], set()
        key = os.environ.get(KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(self.options.timeout, connect=min(self.options.timeout, CONNECT_SECONDS))
        with httpx.Client(timeout=timeout, headers=headers) as http:
            for _ in range(self.options.max_turns):
                body = call_with_retries(lambda: self.call(http, messages), self.backoff, SERVICE)
                add_usage(usage, body.get("usage") or {})
                choice = body["choices"][0]
                reply = THINKING.sub("", choice["message"].get("content") or "")
                description = describe(reply, description)
                cut = choice.get("finish_reason") == "length"
                feedback, note, failed = apply_reply(reply, files, cut)
                notes = [note] if note else []
                if feedback is None:
                    break
                if failed & failed_before:
                    notes.append("the same edit block failed twice; stopped asking for corrections")
                    break
                failed_before |= failed
                messages.append({"role": "assistant", "content": reply})
                messages.append({"role": "user", "content": feedback})
        if not files.changed():
            notes.append("no editable file was changed")
        return usage.proposal(description, usage.cost(self.model), "; ".join(notes) or None)

    def prompt(self, brief: Brief, files: EditableFiles) -> list[dict]:
        """System message (stable: a server's prefix cache can reuse it), then the volatile part."""
        stable, volatile = split_brief(brief.text)
        context = file_context(files, [*brief.editable, *brief.protected], brief.text)
        if context:
            stable += "\n\n## Files\n\n" + context
        ask = f"Editable files: {', '.join(brief.editable)}. Reply with your one change."
        return [
            {"role": "system", "content": f"{INSTRUCTIONS}\n\n{stable}"},
            {"role": "user", "content": "\n\n".join(p for p in (volatile, ask) if p)},
        ]

    def call(self, http: httpx.Client, messages: list[dict]) -> dict:
        """One chat completion; failures become transient, fatal or experiment errors."""
        import httpx

        request = {"model": self.model, "messages": messages, "stream": False}
        try:
            response = http.post(f"{self.base_url}/chat/completions", json=request)
        except httpx.TransportError as error:  # refused, dropped, timed out
            raise TransientError(f"connection failed: {error!r}") from error
        if response.status_code >= 400:
            detail = error_detail(response)
            raise http_failure(response.status_code, detail, response.headers, SERVICE, KEY_ENV)
        try:
            body = response.json()
            body["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise TransientError(f"malformed response: {response.text[:200]!r}") from error
        return body


def add_usage(usage: Usage, reported: dict) -> None:
    """OpenAI counts cached prompt tokens inside ``prompt_tokens``; keep them apart."""
    cached = (reported.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    prompt = reported.get("prompt_tokens") or 0
    usage.add(prompt - cached, reported.get("completion_tokens"), 0, cached)


def describe(reply: str, previous: str) -> str:
    """The reply's DESCRIPTION line; else the first description given; else the prose before
    the first block."""
    found = DESCRIPTION.search(reply)
    if found:
        return one_line(found.group(1))
    return previous or one_line(reply.split("<<<<<<<")[0])


def apply_reply(reply: str, files: EditableFiles, cut: bool) -> tuple[str | None, str | None, set]:
    """Apply the reply's edit blocks. Returns the correction to send (None: done), a note, and the
    (path, search) of each block that failed."""
    blocks = parse_edit_blocks(reply)
    failed = apply_edit_blocks(blocks, files)
    if (blocks and not failed) or (not blocks and files.changed()):
        return None, None, set()
    lines = ["Your reply was cut off at the output limit; make smaller edits."] if cut else []
    if not blocks:
        lines.append("Your reply had no complete SEARCH/REPLACE block. Reply with the blocks.")
        return "\n".join(lines), "the reply had no complete SEARCH/REPLACE block", set()
    errors = [error for _, error in failed]
    lines += ["These blocks were not applied (the others were):", *errors]
    lines.append("Send corrected blocks for these only, copying SEARCH text exactly.")
    current = file_context(files, sorted({b.path for b in blocks if b.path}), "")
    if current:
        lines += ["", "The files now:", "", current]
    note = f"{len(errors)} of {len(blocks)} edit blocks not applied: {errors[0]}"
    keys = {(block.path, block.search) for block, _ in failed}
    return "\n".join(lines), note + (" (the reply was cut off)" if cut else ""), keys


def error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    error = body.get("error", body) if isinstance(body, dict) else body
    return error.get("message", str(error)) if isinstance(error, dict) else str(error)


@hookimpl
def register_agents(register):
    register(OpenAIAgent)
