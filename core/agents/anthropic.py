"""The ``anthropic`` agent: Claude through the Messages API, editing with file tools."""

from __future__ import annotations

import os

from ..agent import Agent, AgentOptions, Brief, FatalAgentError, Proposal
from ..hookspecs import hookimpl
from .files import EditableFiles
from .prompt import RULES, file_context, one_line, split_brief
from .retry import CONNECT_SECONDS, Backoff, TransientError, call_with_retries, http_failure
from .tools import SUBMIT, TOOLS, ToolBox, ToolInputError, string
from .usage import Usage

DEFAULT_MODEL = "claude-sonnet-5-5"
MAX_TOKENS = 32_000  # per response; room for a whole rewritten file plus adaptive thinking
SERVICE = "Anthropic API"
KEY_ENV = "ANTHROPIC_API_KEY"
CACHE = {"type": "ephemeral"}
# A stream's error event arrives with HTTP 200; its type says what the status would have been.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

INSTRUCTIONS = (
    RULES
    + """
Work with the tools: view_file to read, replace_in_file for targeted edits (preferred), write_file
to rewrite a whole file, read_log for the previous experiment's output. When the change is
complete, call submit with its one-line description. You have at most {max_turns} turns."""
)
TRUNCATED = "not run: your reply hit the output limit and this call was cut off; make smaller edits"


class AnthropicAgent(Agent):
    name = "anthropic"
    description = "Claude via the Anthropic Messages API, editing the files with tools."

    def __init__(self, options: AgentOptions | None = None):
        super().__init__(options)
        self.model = self.options.model or DEFAULT_MODEL
        self.max_tokens = int(self.options.extra.get("max_tokens", MAX_TOKENS))
        self.backoff = Backoff.from_options(self.options)
        self._client = None

    def announce(self) -> str:
        where = self.options.base_url or "api.anthropic.com"
        turns = self.options.max_turns
        return f"agent: anthropic, model {self.model} at {where}, at most {turns} turns a proposal"

    def check(self) -> None:
        self.client()

    def propose(self, brief: Brief) -> Proposal:
        client = self.client()
        files = EditableFiles(brief.root, brief.editable, brief.protected)
        toolbox = ToolBox(files, brief.last_log)
        system, messages = self.prompt(brief, files)
        usage = Usage()
        text, submitted = "", None
        ending = f"stopped after {self.options.max_turns} turns without submit"
        for _ in range(self.options.max_turns):
            message = call_with_retries(lambda: self.call(client, system, messages), self.backoff, SERVICE)
            u = message.usage
            usage.add(
                u.input_tokens,
                u.output_tokens,
                u.cache_creation_input_tokens,
                u.cache_read_input_tokens,
            )
            content = [
                block.to_dict(mode="json", exclude_none=True, warnings=False) for block in message.content
            ]
            messages.append({"role": "assistant", "content": content})
            text = "".join(b.text for b in message.content if b.type == "text") or text
            calls = [block for block in message.content if block.type == "tool_use"]
            if not calls:
                ending = "ended its turn without submit"
                break
            results, submitted = run_calls(calls, toolbox, message.stop_reason == "max_tokens")
            if submitted is not None:
                break
            messages.append({"role": "user", "content": results})
        notes = [] if submitted is not None else [ending]
        if not files.changed():
            notes.append("no editable file was changed")
        description = submitted if submitted is not None else one_line(text)
        return usage.proposal(description, usage.cost(self.model), "; ".join(notes) or None)

    def client(self):
        """The SDK client (imported here: the CLI must start fast); its own retries are off."""
        if self._client is None:
            key = os.environ.get(KEY_ENV)
            if not key:
                raise FatalAgentError(
                    f"{KEY_ENV} is not set: export it, or choose another agent "
                    "(--agent mutate, openai or command)"
                )
            import anthropic
            import httpx2

            timeout = self.options.timeout
            self._client = anthropic.Anthropic(
                api_key=key,
                base_url=self.options.base_url,
                timeout=httpx2.Timeout(timeout, connect=min(timeout, CONNECT_SECONDS)),
                max_retries=0,
            )
        return self._client

    def prompt(self, brief: Brief, files: EditableFiles) -> tuple[list[dict], list[dict]]:
        """System blocks (stable, cached) and the first user message (volatile)."""
        stable, volatile = split_brief(brief.text)
        context = file_context(files, brief.protected, brief.text)
        if context:
            stable += "\n\n## Protected files (read-only)\n\n" + context
        system = [
            {"type": "text", "text": INSTRUCTIONS.format(max_turns=self.options.max_turns)},
            {"type": "text", "text": stable, "cache_control": CACHE},
        ]
        ask = f"Editable files: {', '.join(brief.editable)}. Make your one change, then submit."
        first = "\n\n".join(part for part in (volatile, ask) if part)
        return system, [{"role": "user", "content": [{"type": "text", "text": first}]}]

    def call(self, client, system: list[dict], messages: list[dict]):
        """One streamed request; failures become transient, fatal or experiment errors."""
        import anthropic
        import httpx2  # the SDK's HTTP client: a connection dropped mid-stream raises its errors

        try:
            with client.messages.stream(
                model=self.model,
                max_tokens=self.max_tokens,
                system=system,
                tools=TOOLS,
                messages=with_cache_mark(messages),
            ) as stream:
                message = stream.get_final_message()
        except anthropic.APIStatusError as error:
            status = error.status_code
            if status < 400:
                status = ERROR_TYPE_STATUS.get(error.type or "", 500)
            detail = error.api_message or str(error)
            raise http_failure(status, detail, error.response.headers, SERVICE, KEY_ENV) from error
        except (anthropic.APIConnectionError, httpx2.TransportError) as error:
            raise TransientError(f"connection failed: {error}") from error
        except ValueError as error:  # the SDK could not parse streamed tool-input JSON
            raise TransientError(f"malformed response: {error}") from error
        if message.stop_reason is None:
            raise TransientError("the response stream ended early")
        return message


def run_calls(calls: list, toolbox: ToolBox, truncated: bool) -> tuple[list[dict], str | None]:
    """The tool results for one assistant turn, and the description if it submitted."""
    results, submitted = [], None
    for call in calls:
        if truncated:  # the input may be cut short: never write half a file
            reply, failed = TRUNCATED, True
        elif call.name == SUBMIT:
            reply, failed = submit_description(call.input)
            submitted = submitted if failed else reply
        else:
            reply, failed = toolbox.run(call.name, call.input)
        results.append({"type": "tool_result", "tool_use_id": call.id, "content": reply, "is_error": failed})
    return results, submitted


def submit_description(args: object) -> tuple[str, bool]:
    """The submitted one-line description, or an error for the model."""
    try:
        description = one_line(string(args if isinstance(args, dict) else {}, "description"))
    except ToolInputError as error:
        return f"submit: {error}", True
    return (description, False) if description else ("submit: the description is empty", True)


def with_cache_mark(messages: list[dict]) -> list[dict]:
    """A copy whose last block carries ``cache_control``: the next turn reads this one cached."""
    last = messages[-1]
    content = [*last["content"][:-1], {**last["content"][-1], "cache_control": CACHE}]
    return [*messages[:-1], {**last, "content": content}]


@hookimpl
def register_agents(register):
    register(AnthropicAgent)
