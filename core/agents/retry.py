"""Retrying API calls through blips (rate limits, overload, 5xx, dropped connections)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..agent import AgentError, AgentOptions, FatalAgentError

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_SECONDS = 10.0  # a black-holed endpoint fails fast and is retried, not awaited for long
RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx, which includes Anthropic's 529 "overloaded"


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter, retrying one call for at most ``seconds``."""

    seconds: float = 900.0  # a long API outage becomes an agent_error, not a dead run
    base: float = 1.0  # the first delay
    cap: float = 60.0  # the longest delay

    @classmethod
    def from_options(cls, options: AgentOptions) -> Backoff:
        extra = options.extra
        return cls(
            seconds=float(extra.get("retry_seconds", cls.seconds)),
            base=float(extra.get("retry_base_seconds", cls.base)),
            cap=float(extra.get("retry_max_delay", cls.cap)),
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Half fixed, half random, so that many clients don't retry in lockstep."""
        step = min(self.cap, self.base * 2**attempt)
        return max(step / 2 + random.uniform(0, step / 2), retry_after or 0.0)


def call_with_retries(call: Callable[[], T], backoff: Backoff, what: str) -> T:
    """``call()``, again after each ``TransientError`` until ``backoff.seconds`` are spent.

    Then an ``AgentError``: the experiment is recorded as ``agent_error`` and the run goes on.
    """
    deadline = time.monotonic() + backoff.seconds
    attempt = 0
    while True:
        try:
            return call()
        except TransientError as error:
            delay = backoff.delay(attempt, error.retry_after)
            attempt += 1
            if time.monotonic() + delay > deadline:
                raise AgentError(
                    f"{what}: {error} (gave up after {attempt} attempts in {backoff.seconds:g} s)"
                ) from error
            log.warning("%s: %s; retrying in %.1f s", what, error, delay)
            time.sleep(delay)


def retry_after_seconds(headers) -> float | None:
    """The ``retry-after`` header in seconds (HTTP-date forms are ignored)."""
    try:
        return max(0.0, float(headers.get("retry-after")))
    except (TypeError, ValueError):
        return None


def http_failure(status: int, detail: str, headers, service: str, key_env: str) -> Exception:
    """The exception for an HTTP error from an LLM API: fatal, transient, or this experiment's."""
    detail = " ".join(str(detail).split())[:300]
    if status in (401, 403):
        return FatalAgentError(f"{service} rejected the key (HTTP {status}): check {key_env}")
    if status == 404:
        return FatalAgentError(
            f"{service} has no such model or endpoint (HTTP 404: {detail}): check --model and --base-url"
        )
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientError(f"HTTP {status}: {detail}", retry_after_seconds(headers))
    return AgentError(f"{service}: HTTP {status}: {detail}")
