"""The ``command`` agent: any coding-agent CLI (Claude Code, Codex, aider, ...) in the workspace.

``--agent-command`` is a shell command run in the workspace root. ``{brief_file}`` in it is
replaced by the path of a file holding the brief; without it the brief arrives on stdin. The
presets ``claude`` and ``codex`` (``--agent-command claude``, or the ``preset`` option) run those
CLIs headless with JSON output, editing tools only and no permission-skipping flag, so they work
as root too.

Afterwards the harness undoes any commits the agent made and reverts every change outside the
editable files. The description is the first line of ``.autoresearch/agent/description.txt`` if
the agent wrote it, else of its final message. Token usage and cost come from the CLI's JSON
output where it prints one (see ``reports``). Files of the last call (brief, stdout, stderr) stay
in ``.autoresearch/agent/`` for inspection.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..agent import Agent, AgentError, AgentOptions, Brief, FatalAgentError, Proposal
from ..hookspecs import hookimpl
from ..measure import log_tail
from ..processes import GRACE_SECONDS, kill_group
from .guard import changed_paths, restore, snapshot
from .prompt import one_line
from .reports import Report, parse_report

AGENT_DIR = ".autoresearch/agent"  # the brief, the CLI's output and its description file
DESCRIPTION_FILE = f"{AGENT_DIR}/description.txt"
BRIEF_PLACEHOLDER = "{brief_file}"
COMMAND_NOT_FOUND = 127  # the shell's exit status
AUTH_FAILURE = re.compile(r"invalid api key|/login|authentication_error|unauthorized", re.I)

PREAMBLE = """\
You are run once by an autoresearch harness to propose ONE change; no human is present.
- Edit only these files: {editable}. Changes to any other file are reverted.
- Do not run the experiment, commit, or ask questions: the harness measures your change after
  you exit and keeps it only if the metric improves.
- End with a one-line description of the idea as your final message, or write it to
  {description_file}.

"""


def claude_argv(options: AgentOptions) -> list[str]:
    """Claude Code, headless: edits are accepted, every other tool (Bash, web, ...) is denied."""
    argv = ["claude", "-p", "--output-format", "json", "--permission-mode", "acceptEdits"]
    argv += ["--allowedTools", "Read,Edit,Write,Glob,Grep", "--max-turns", str(options.max_turns)]
    return argv + (["--model", options.model] if options.model else [])


def codex_argv(options: AgentOptions) -> list[str]:
    """Codex in exec mode, JSON events, sandboxed to writing the workspace; prompt on stdin."""
    argv = ["codex", "exec", "--json", "--sandbox", "workspace-write"]
    return argv + (["--model", options.model] if options.model else []) + ["-"]


PRESETS: dict[str, Callable[[AgentOptions], list[str]]] = {
    "claude": claude_argv,
    "codex": codex_argv,
}


class CommandAgent(Agent):
    name = "command"
    description = "Any coding-agent CLI (presets: claude, codex) run once per experiment."

    def __init__(self, options: AgentOptions | None = None):
        super().__init__(options)
        command = self.options.command
        self.preset = self.options.extra.get("preset") or (command if command in PRESETS else None)

    def announce(self) -> str:
        what = f"preset {self.preset}" if self.preset else repr(self.options.command)
        return f"agent: command ({what}), timeout {self.options.timeout:g} s"

    def propose(self, brief: Brief) -> Proposal:
        scratch = brief.root / AGENT_DIR
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / ".gitignore").write_text("*\n")  # never part of a change
        brief_file = scratch / "brief.md"
        brief_file.write_text(self.prompt(brief))
        (brief.root / DESCRIPTION_FILE).unlink(missing_ok=True)
        argv, stdin = self.command(brief_file)

        before = snapshot(brief.root)
        returncode = run(argv, brief.root, stdin, scratch, self.options.timeout)
        stdout = (scratch / "stdout.txt").read_text(errors="replace")
        report = parse_report(stdout)
        self.check_result(returncode, report, scratch / "stderr.txt")

        description = self.description_of(brief.root, report)
        reverted, undone = restore(brief.root, before, brief.editable)
        notes = []
        if undone:
            notes.append("undid the agent's commits (their changes stay in the working tree)")
        if reverted:
            notes.append(f"reverted changes outside the editable files: {', '.join(reverted)}")
        if not changed_paths(brief.root) & set(brief.editable):
            notes.append("no editable file was changed")
        return report.usage.proposal(description, self.cost(report), "; ".join(notes) or None)

    def check(self) -> None:
        self.command(Path(BRIEF_PLACEHOLDER))

    def prompt(self, brief: Brief) -> str:
        editable = ", ".join(brief.editable)
        return PREAMBLE.format(editable=editable, description_file=DESCRIPTION_FILE) + brief.text

    def command(self, brief_file: Path) -> tuple[list[str], Path | None]:
        """The argv to run and the file for its stdin (None: no stdin)."""
        if self.preset:
            if self.preset not in PRESETS:
                raise FatalAgentError(f"unknown preset {self.preset!r}: use claude or codex")
            argv = PRESETS[self.preset](self.options)
            if shutil.which(argv[0]) is None:
                raise FatalAgentError(f"{argv[0]} is not on PATH: install it, or give --agent-command '...'")
            return argv, brief_file
        command = self.options.command
        if not command:
            raise FatalAgentError(
                "the command agent needs --agent-command 'CLI ...' (or 'claude' or 'codex'); "
                f"{BRIEF_PLACEHOLDER} in it becomes the brief's path, else the brief is on stdin"
            )
        uses_file = BRIEF_PLACEHOLDER in command
        command = command.replace(BRIEF_PLACEHOLDER, shlex.quote(str(brief_file)))
        return ["/bin/sh", "-c", command], None if uses_file else brief_file

    def check_result(self, returncode: int, report: Report, stderr: Path) -> None:
        """Raise for a failed run: fatal where no later run can succeed, else this experiment's."""
        if not returncode and not report.error:
            return
        # The CLI's own error report, else the last line it printed (a traceback's last line).
        lines = log_tail(stderr, 20).splitlines() or report.message.splitlines()
        failure = one_line(report.error or "") or one_line("\n".join(reversed(lines)))
        if returncode == COMMAND_NOT_FOUND:
            raise FatalAgentError(f"agent command not found: {failure}")
        if AUTH_FAILURE.search(failure):
            raise FatalAgentError(f"the agent CLI could not log in: {failure}")
        raise AgentError(f"agent command failed (exit {returncode}): {failure}")

    def description_of(self, root: Path, report: Report) -> str:
        written = root / DESCRIPTION_FILE
        if written.is_file():
            text = one_line(written.read_text(errors="replace"))
            written.unlink()
            if text:
                return text
        return one_line(report.message)

    def cost(self, report: Report) -> float | None:
        if report.cost_usd is not None:
            return report.cost_usd
        return report.usage.cost(self.options.model) if report.has_usage else None


def run(argv: list[str], root: Path, stdin: Path | None, out_dir: Path, timeout: float) -> int:
    """Run ``argv`` in its own process group; on timeout (or Ctrl-C) the whole group is killed."""
    with (
        open(stdin or os.devnull, "rb") as source,
        open(out_dir / "stdout.txt", "wb") as stdout,
        open(out_dir / "stderr.txt", "wb") as stderr,
    ):
        proc = subprocess.Popen(
            argv, cwd=root, stdin=source, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AgentError(f"agent command timed out after {timeout:g} s; stopped") from None
        finally:
            # Also reaps what a finished agent left running in the background.
            kill_group(proc.pid, grace=0 if proc.poll() is not None else GRACE_SECONDS)
            proc.wait()


@hookimpl
def register_agents(register):
    register(CommandAgent)
