"""The statuses of an experiment row, defined once, and the groups the code asks about."""

ALL = ("baseline", "keep", "discard", "invalid", "crash", "timeout", "interrupted", "agent_error")
INCUMBENT = ("baseline", "keep")  # a row whose commit became the incumbent
DECIDED = ("baseline", "keep", "discard")  # measured and judged: the policy's evidence
MEASUREMENT_FAILURES = ("crash", "timeout", "interrupted", "invalid")  # a failed Measurement's status
SHOWN_FAILURES = ("crash", "timeout", "invalid")  # the agent sees the last one and its log
