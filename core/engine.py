"""One experiment: brief -> propose -> check -> commit -> measure -> decide -> record.

With one slot the loop here runs them one at a time; with more, ``scheduler.py`` runs several
``_experiment`` calls at once, each in its own thread, draft and measurement checkouts, and this
module stays the one writer of git refs and the ledger (``writer``, a lock every write holds).

Every step that changes git or the ledger is ordered so that a kill at any moment leaves both
consistent: the ledger's ``pending`` row says which experiment was in flight, and ``resume``
finds the run branch at the incumbent (or finishes an experiment that was already decided). The
user's checkout takes no part: the agent edits a draft checkout, each measurement runs in a fresh
checkout of one commit, and the run branch moves only by compare-and-swap.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import socket
import statistics
import threading
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import checks, sandbox, statuses
from .abort import EarlyAbort
from .accept import POLICIES, Decision, Evidence
from .agent import Agent, AgentError, AgentExhausted, Brief, FatalAgentError
from .brief import BriefSettings, brief_values, editable_paths, program_text, render
from .cache import CacheManifest
from .checkout import CheckoutError, Checkouts
from .config import check_editable
from .display import Display
from .executors import Job, make_executor
from .history import History, LedgerError, Pending, now
from .measure import Runner, Usage
from .processes import kill_group
from .slots import CANDIDATE, CONFIRM, SlotPool, make_slots, parse_devices
from .strategy import STRATEGIES
from .target import ConfigError, Measurement, Target
from .workspace import BranchMoved, RunLock, Workspace, WorkspaceError

FAULT_ENV = "AUTORESEARCH_FAULT"  # test hook: SIGKILL ourselves at this named point
AGENT_BACKOFF_SECONDS = (1.0, 5.0, 15.0, 30.0)  # waits after 1, 2, 3, 4 agent errors in a row; then stop
DRIFT_SIGMAS = 3.0  # an incumbent re-measurement this far from its earlier samples is drift


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop the experiment in flight, record it, leave the incumbent.

    A BaseException, like KeyboardInterrupt, so an agent's ``except Exception`` cannot swallow it.
    """


class StopRun(Exception):
    """The run must stop now (fatal agent error, ...); the message says why."""


def fault(point: str) -> None:
    """Die here like ``kill -9`` when the fault-injection switch names this point."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class RunOptions:
    tag: str
    budget: float | None = None  # overrides the target's budget
    max_experiments: int | None = None  # counted from this invocation
    max_hours: float | None = None  # counted from this invocation
    max_cost: float | None = None  # USD, counted from this invocation
    min_delta: float = 0.0
    accept: str = "noise"
    baseline_runs: int = 3
    seed: int = 0
    memory_limit_mb: float | None = None
    log_limit_mb: float | None = None
    no_network: bool = False
    early_abort: bool = True  # stop a candidate whose progress curve falls behind (needs a curve key)
    abort_after: float = 0.2  # never before this share of the budget
    remeasure_every: int = 10  # noise-aware: measure the incumbent when not measured for this many
    slots: int | None = None  # measurements at once (default: one per --devices entry, or 1)
    devices: str | None = None  # "0,1" or "cuda:0,cuda:1": the slots' GPUs
    ahead: int | None = None  # proposals drafted ahead (default: the slots; 0 with one slot)
    stale: str = "revalidate"  # a keep whose parent is no longer the incumbent: revalidate | discard
    strategy: str = "incumbent"
    executor: str = "local"  # where measurements run: local | ray
    ray_address: str | None = None  # --executor ray: the cluster (None: a local Ray, or $RAY_ADDRESS)
    brief: BriefSettings = field(default_factory=BriefSettings)


@dataclass
class Summary:
    tag: str
    experiments: int = 0
    kept: int = 0
    baseline: float | None = None
    best: float | None = None
    stopped_because: str = ""
    error: str | None = None  # the run stopped on a problem the user must fix

    def lines(self, metric: str) -> list[str]:
        out = [f"run {self.tag}: {self.experiments} experiments, {self.kept} kept"]
        if self.best is not None:
            gained = "" if self.baseline is None else f" (baseline {self.baseline:.6g})"
            out.append(f"best {metric}: {self.best:.6g}{gained}")
        if self.stopped_because:
            out.append(f"stopped: {self.stopped_because}")
        return out


def machine_fingerprint() -> dict:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


class Engine:
    """Runs one ratchet: a target, an agent, a workspace and its ledger."""

    def __init__(
        self,
        workspace: Workspace,
        target: Target,
        agent: Agent,
        history: History,
        options: RunOptions,
        display: Display | None = None,
        observer=None,
    ):
        self.ws = workspace
        self.target = target
        self.agent = agent
        self.history = history
        self.options = options
        self.display = display or Display(live=False)
        self.observer = observer  # callable(run, experiment, say) after each record; say prints a line
        self.tag = options.tag
        self.branch = f"autoresearch/{self.tag}"
        self.budget = options.budget or target.budget
        self.policy = POLICIES[options.accept](target.metric, options.min_delta)
        if options.accept == "noise" and options.baseline_runs < 2:
            raise ConfigError("--accept noise needs --baseline-runs 2 or more (or use --accept strict)")
        self.evidence = Evidence(relative=target.metric.noise == "relative")
        self.runner = Runner(
            memory_limit_mb=options.memory_limit_mb,
            log_limit_mb=options.log_limit_mb,
            env_passthrough=target.env_passthrough,
            on_start=self._evaluator_started,
        )
        self.network = target.network and not options.no_network
        if options.no_network and sandbox.bwrap_problem():
            raise ConfigError(f"--no-network needs the sandbox, but {sandbox.bwrap_problem()}")
        self.checkouts = Checkouts(workspace)
        self.executor = make_executor(
            options.executor,
            options.ray_address,
            options.devices,
            target=target,
            runner=self.runner,
            checkouts=self.checkouts,
            memory_limit_mb=options.memory_limit_mb,
            log_limit_mb=options.log_limit_mb,
        )
        self.slots = SlotPool(make_slots(options.slots, parse_devices(options.devices)))
        default_ahead = self.slots.size if self.slots.size > 1 else 0  # one slot: today's loop
        self.ahead = default_ahead if options.ahead is None else options.ahead
        if self.ahead < 0:
            raise ConfigError("--ahead must be 0 or more")
        self.parallel = self.slots.size > 1 or self.ahead > 0  # the scheduler runs the loop
        options.slots, options.ahead = self.slots.size, self.ahead  # recorded with the run
        self.runner.exclusive = not self.parallel
        self.strategy = STRATEGIES[options.strategy]()
        self.writer = threading.RLock()  # held by every write of git refs and the ledger
        self.current = threading.local()  # the experiment (number, slot) this thread works on
        self.host = socket.gethostname()
        self.retry: list[int] = []  # numbers cut short by a kill, run again first
        self.allocated = -1  # the highest number handed out by this run
        self.scheduling = False  # the main thread waits on the slots (a signal may raise there)
        self.interrupting = False
        self.cache = CacheManifest(workspace.state_dir, target)
        self.draft: Workspace | None = None  # the agent's checkout (made when the run starts)
        self.head: str | None = None  # where the run branch is, as this run left it
        self.logs = workspace.state_dir / "logs" / self.tag
        self.protected_blobs: dict[str, str | None] = {}
        self.phase = "idle"
        self.cost = 0.0
        self.descriptions: list[str] | None = None
        self.last_result = ""
        self.invocation: int | None = None  # this invocation's row in the ledger

    # ---- the run

    def run(self) -> Summary:
        """Start or resume the run and loop until a limit, Ctrl-C or a fatal error."""
        self.ws.ensure_state_dir()
        lock = RunLock(self.ws.state_dir)
        lock.acquire()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        summary = Summary(self.tag)
        try:
            self._check_agent()
            self._open_run()
            self.checkouts.remove_stale()
            self._resume()
            self.history.fill_trees(self.tag, self.ws.tree)  # a ledger from before m002
            self.draft = self.checkouts.draft(self.head)
            self.cache.ensure(self.draft.root, echo=self.display.say)
            recorded = sorted(self.history.experiments(self.tag), key=lambda row: row["id"])  # as decided
            self.evidence = Evidence.from_rows(recorded, self.evidence.relative)
            if (
                self.options.accept == "noise"
                and self.history.incumbent(self.tag)
                and self.evidence.noise is None
            ):
                raise ConfigError(
                    f"run {self.tag}'s baseline was measured once, so its noise is unknown; "
                    "resume it with --accept strict, or start a new --tag"
                )
            self._protect()
            if self.history.incumbent(self.tag) is None:
                self._baseline()
            self._loop(summary)
        except Interrupted:
            summary.stopped_because = "interrupted by the user"
        except (StopRun, LedgerError, BranchMoved, CheckoutError) as stop:
            summary.stopped_because = summary.error = str(stop)
        finally:
            if self.draft is not None:
                self.draft.close()
            self.checkouts.remove_measurements()
            self.executor.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            with suppress(LedgerError):  # a lost ledger takes no more writes; its line is the error
                if self.history.run(self.tag):
                    self.history.update_run(self.tag, ended_at=now())
                if self.invocation:
                    self.history.end_invocation(self.invocation)
            lock.release()
        self._summarise(summary)
        return summary

    def _check_agent(self) -> None:
        try:
            self.agent.check()
        except FatalAgentError as error:
            raise StopRun(str(error)) from None

    def _open_run(self) -> None:
        """Create the run branch at the user's last commit (or find it); the checkout stays theirs."""
        if self.ws.head() is None:
            raise WorkspaceError("the repository has no commit yet; commit your files first")
        if self.ws.branch() == self.branch:
            raise WorkspaceError(
                f"your checkout is on {self.branch}, which the run moves; check out another branch "
                "first (e.g. git checkout main): a run never touches your checkout"
            )
        start = self.ws.branch_commit(self.branch)
        if start is None:
            dirty = self.ws.dirty_paths()
            if dirty:
                raise WorkspaceError(
                    f"tracked files have uncommitted changes ({', '.join(dirty[:3])}); commit or stash "
                    "them first: a run starts from your last commit"
                )
            start = self.ws.head()
            self.ws.move_branch(self.branch, start, None)
        check_editable(self.target, self.ws.files_at(start))
        warning = sandbox.weakness()
        if warning:
            self.display.say(warning)
        options = {k: v for k, v in asdict(self.options).items() if k != "brief"} | {"budget": self.budget}
        if self.history.run(self.tag) is None:
            self.history.create_run(
                self.tag,
                self.target.name,
                self.agent.name,
                options,
                machine_fingerprint(),
                self.target.metric.name,
                self.target.metric.direction,
            )
            self.display.say(
                f"run {self.tag}: branch {self.branch} from {start[:12]}, target {self.target.name} "
                f"(your checkout stays as it is; git checkout {self.branch} afterwards to see the result)"
            )
        else:
            self.display.say(f"resuming run {self.tag} on branch {self.branch}")
        self.invocation = self.history.start_invocation(
            self.tag, self.agent.name, self.agent.model_name(), options
        )

    def _resume(self) -> None:
        """After a kill: reap the evaluator, finish a decided experiment, and find the branch
        where the ledger's incumbent says it is (anything else was moved by someone else)."""
        pendings = self.history.pendings(self.tag)
        self.head = self.ws.branch_commit(self.branch)
        for pending in pendings:  # reap every evaluator first: nothing of the dead run goes on
            if pending.pgid:
                kill_group(pending.pgid, grace=1)
        for pending in pendings:
            if pending.phase == "decided":
                self.display.say(f"recovering experiment {pending.number} (measured before a stop)")
                if pending.keep:
                    self.head = pending.parent
                self._finish(pending.row, pending.keep)
            else:
                self.display.say(f"experiment {pending.number} was cut short; running it again")
                self.history.clear_pending(self.tag, pending.number)
                if self.history.incumbent(self.tag):  # an experiment (a baseline runs again anyway)
                    self.retry.append(pending.number)
        incumbent = self.history.incumbent(self.tag)
        if incumbent:
            self.head = incumbent["commit"]
            self._check_branch()

    def _check_branch(self) -> None:
        """Stop, rewriting nothing, when the run branch is not where this run left it."""
        at = self.ws.branch_commit(self.branch)
        if at != self.head:
            raise StopRun(str(BranchMoved(self.branch, at, self.head)))

    def _protect(self) -> None:
        self.protected_blobs = {
            path: self.ws.blob_sha(self.head, path)
            for path in self.ws.files_at(self.head)
            if checks.matches(path, self.target.protected)
        }

    def _protected_problem(self, commit: str) -> str | None:
        for path, sha in self.protected_blobs.items():
            if self.ws.blob_sha(commit, path) != sha:
                return f"protected file {path} changed before the measurement"
        return None

    def _loop(self, summary: Summary) -> None:
        if self.parallel:
            from .scheduler import Scheduler

            return Scheduler(self).loop(summary)
        started = time.monotonic()
        agent_errors = 0
        while True:
            if self.runner.interrupted.is_set():
                raise Interrupted
            limit = self._limit_reached(summary.experiments, started)
            if limit:
                summary.stopped_because = limit
                return
            try:
                row = self._experiment(self.next_number())
            except AgentExhausted as done:
                summary.stopped_because = f"agent {self.agent.name} has nothing left to propose ({done})"
                return
            summary.experiments += 1
            summary.kept += row["status"] == "keep"
            agent_errors = agent_errors + 1 if row["status"] == "agent_error" else 0
            if agent_errors:
                self._back_off(agent_errors, row["reason"])

    def _back_off(self, errors: int, reason: str) -> None:
        """Wait longer after each agent error in a row, and stop when the agent keeps failing."""
        if errors > len(AGENT_BACKOFF_SECONDS):
            raise StopRun(
                f"agent {self.agent.name} failed {errors} times in a row (last: {reason}); "
                "fix the cause and run again to resume"
            )
        wait = AGENT_BACKOFF_SECONDS[errors - 1]
        self._show(f"agent error {errors} in a row: trying again in {wait:g}s")
        if self.runner.interrupted.wait(wait):
            raise Interrupted

    def next_number(self) -> int:
        """The driver hands out experiment numbers: first those a kill cut short, then new ones."""
        with self.writer:
            if self.retry:
                return self.retry.pop(0)
            self.allocated = max(self.history.next_number(self.tag), self.allocated + 1)
            return self.allocated

    def _limit_reached(self, done: int, started: float) -> str | None:
        opts = self.options
        if opts.max_experiments is not None and done >= opts.max_experiments:
            return f"--max-experiments {opts.max_experiments} reached"
        if opts.max_hours is not None and time.monotonic() - started >= opts.max_hours * 3600:
            return f"--max-hours {opts.max_hours:g} reached"
        if opts.max_cost is not None:
            costs = [r["cost_usd"] or 0 for r in self.history.recent(self.tag, 20)]
            next_cost = max(costs, default=0.0)
            if self.cost + next_cost > opts.max_cost:
                return f"--max-cost ${opts.max_cost:g} would be exceeded (spent ${self.cost:.4f})"
        return None

    # ---- baseline

    def _baseline(self) -> None:
        head = self.head
        number = self.history.next_number(self.tag)  # 0, or after the rows of failed baselines
        self.current.number = number
        row = self._row(number, head, head, "baseline", "untouched baseline", time.monotonic())
        row["tree"] = self.ws.tree(head)
        self.history.set_pending(self.tag, Pending(number, "measure", head))
        samples, curves, measurement, usage = [], [], None, None
        runs = self.options.baseline_runs
        if runs > 1:
            each = self.target.allowances(self.budget).total
            self.display.say(
                f"measuring the baseline {runs} times to estimate the noise "
                f"(up to about {runs * each / 60:.0f} min: {runs} x {each:.0f} s)"
            )
        for run in range(runs):
            self._show(f"baseline {run + 1}/{runs}: measuring", clock=True)
            watch = self._watcher(abort=False)
            measurement, usage = self._measure(number, head, seed_offset=run, watch=watch)
            if not measurement.ok:
                break
            samples.append(measurement.metric)
            curves.append(watch.curve if watch else [])
        row = self._with_measurement(row, measurement, usage) | self._place()
        row |= {"samples": samples, "curves": {"samples": curves}}
        if len(samples) < runs:
            self._discard(row, raise_after=measurement.status == "interrupted")
            # a timeout's reason says what to raise; the evaluator itself may be protected
            todo = "" if measurement.status == "timeout" else ": the untouched code must measure first"
            raise StopRun(
                f"the baseline failed ({measurement.status}: {measurement.reason}); see "
                f"{self.ws.root / measurement.log_path}{todo}"
            )
        row["metric"] = statistics.fmean(samples)
        self._finish(row, keep=True)

    # ---- one experiment

    def _experiment(self, number: int, draft: Workspace | None = None) -> dict:
        """The story of one experiment, top to bottom; ``draft`` is its own checkout with slots."""
        draft = draft or self.draft
        self.current.number = number
        with self.writer:
            self._check_branch()
            parent = self.strategy.parent(self.head)
            self.history.set_pending(self.tag, Pending(number, "propose", parent))
        self.checkouts.reset(draft, parent)
        started = time.monotonic()
        seed = self.options.seed + number
        self._show(f"experiment {number}: {self.agent.name} is proposing")
        row = self._row(number, parent, None, "invalid", None, started)
        try:
            self.phase = "propose"
            fault("propose")
            proposal = self.agent.propose(self.brief(seed, draft.root, draft.tracked_files()))
            row |= {
                "description": proposal.description,
                "input_tokens": proposal.input_tokens,
                "output_tokens": proposal.output_tokens,
                "cache_write_tokens": proposal.cache_write_tokens,
                "cache_read_tokens": proposal.cache_read_tokens,
                "cost_usd": proposal.cost_usd,
            }
            self.cost += proposal.cost_usd or 0.0
        except Interrupted:
            stopped = {"status": "interrupted", "reason": "stopped during the proposal"}
            return self._discard(row | stopped, raise_after=True)
        except AgentExhausted:  # nothing was tried: no row (the draft is reset before the next one)
            self.history.clear_pending(self.tag, number)
            raise
        except FatalAgentError as error:
            self._discard(row | {"status": "agent_error", "reason": str(error)[:500]})
            raise StopRun(str(error)) from None
        except Exception as error:  # AgentError, or a bug in a plugin: the loop goes on
            reason = str(error) if isinstance(error, AgentError) else f"{type(error).__name__}: {error}"
            return self._discard(row | {"status": "agent_error", "reason": reason[:500]})
        finally:
            self.phase = "check"
        row["propose_seconds"] = time.monotonic() - started
        if self.runner.interrupted.is_set():  # Ctrl-C while a slot's agent was proposing
            stopped = {"status": "interrupted", "reason": "stopped during the proposal"}
            return self._discard(row | stopped, raise_after=True)
        fault("edited")
        if not (draft.root / ".git").exists():
            stopped = {"status": "invalid", "reason": "its draft checkout was deleted during the proposal"}
            return self._discard(row | stopped)
        change = checks.read_change(draft)
        row |= {
            "diff": change.diff,
            "diff_sha": change.sha,
            "lines_added": change.added,
            "lines_removed": change.removed,
        }
        earlier = self.history.measured_tree(self.tag, change.tree)  # the same code, measured before
        reason = checks.problem(draft, self.target, change, earlier)
        if reason:
            if proposal.note and not change.paths:
                reason = f"{reason} ({proposal.note})"
            return self._discard(row | {"status": "invalid", "reason": reason})
        row["_note"] = proposal.note
        commit = draft.commit_files(
            f"experiment {number}: {proposal.description or 'no description'}", change.paths
        )
        with self.writer:
            self.ws.keep_ref(f"refs/autoresearch/{self.tag}/attempts/{number}", commit)
            row |= {"commit": commit, "tree": change.tree}
            self.history.set_pending(self.tag, Pending(number, "measure", parent, commit))
        fault("committed")
        return self._measure_and_decide(row, draft)

    def _measure_and_decide(self, row: dict, draft: Workspace) -> dict:
        number = row["number"]
        while True:
            problem = self._protected_problem(row["commit"])
            if problem:
                return self._discard(row | {"status": "invalid", "reason": problem})
            self._show(f"experiment {number}: measuring", clock=True)
            watch = self._watcher(abort=self._is_head(row["parent_commit"]))
            measurement, usage = self._measure(number, row["commit"], watch=watch)
            row |= self._place()
            fault("measured")
            row = self._with_measurement(row, measurement, usage)
            if watch and watch.reason:  # early abort: a discard, never a sample of the metric
                aborted = {"status": "discard", "reason": watch.reason, "curves": {"aborted": [watch.curve]}}
                return self._discard(row | aborted)
            row["curves"] = {"samples": [watch.curve if watch else []], "incumbent_samples": []}
            if not measurement.ok:
                raise_after = measurement.status == "interrupted"
                return self._discard(row, raise_after=raise_after)
            decision = self._decide(row, measurement.metric)
            row |= {
                "status": "keep" if decision.keep else "discard",
                "reason": (row.pop("_revalidated", "") + decision.reason),
                "samples": decision.candidate,
                "metric": statistics.fmean(decision.candidate),
                "incumbent_samples": decision.incumbent,
                "gain": decision.gain,
                "extra_runs": decision.extra_runs,
            }
            with self.writer:
                if not decision.keep or self.head == row["parent_commit"]:
                    return self._decided(row, decision.keep)
                row, final = self._stale(row, draft)
                if final:
                    return self._discard(row)

    def _decided(self, row: dict, keep: bool) -> dict:
        """Save the decision (a kill from here on is finished by the resumed run), then apply it."""
        row["total_seconds"] = time.monotonic() - row.pop("_started")
        pending = Pending(row["number"], "decided", row["parent_commit"], row["commit"], row=row, keep=keep)
        self.history.set_pending(self.tag, pending)
        return self._finish(row, keep)

    def _stale(self, row: dict, draft: Workspace) -> tuple[dict, bool]:
        """A keep whose parent is no longer the incumbent (another experiment was kept meanwhile).

        ``--stale discard`` drops it; ``revalidate`` cherry-picks it onto the incumbent, to be
        measured and decided again there (a conflict is ``invalid``): a kept change always was
        measured on the commit it is kept on top of. Returns the row, and whether it is final."""
        kept = self._kept_since(row["parent_commit"], row["diff"] or "")
        if self.options.stale == "discard":
            reason = f"stale: experiment {kept} was kept meanwhile (it beat its parent: {row['reason']})"
            return row | {"status": "discard", "reason": reason}, True
        self.checkouts.reset(draft, self.head)
        commit = draft.cherry_pick(row["commit"])
        if commit is None:
            reason = f"conflicts with experiment {kept}, kept meanwhile (it beat its parent: {row['reason']})"
            return row | {"status": "invalid", "reason": reason}, True
        self.ws.keep_ref(f"refs/autoresearch/{self.tag}/attempts/{row['number']}", commit)
        self.history.set_pending(self.tag, Pending(row["number"], "measure", self.head, commit))
        self.display.say(f"[{row['number']:>3}] beat its parent; measuring it again on experiment {kept}")
        return {k: v for k, v in row.items() if k != "status"} | {
            "parent_commit": self.head,
            "commit": commit,
            "tree": self.ws.tree(commit),
            "_revalidated": f"measured again on top of experiment {kept}: ",
        }, False

    def _kept_since(self, parent: str, diff: str) -> int:
        """The experiment kept after ``parent`` whose change touches the same files (else the last)."""
        paths = _changed_paths(diff)
        kept = [r for r in self.history.experiments(self.tag, "keep") if r["commit"] != parent]
        kept = [r for r in kept if self.ws.repo.is_ancestor(parent, r["commit"])] or kept
        touching = [r for r in kept if paths & _changed_paths(r["diff"] or "")]
        return (touching or kept)[-1]["number"]

    def _place(self) -> dict:
        """Where this thread's last measurement ran: its slot and machine."""
        return {"slot": getattr(self.current, "slot", 0), "host": self.executor.host() or self.host}

    def _decide(self, row: dict, metric: float) -> Decision:
        """The policy's decision, after re-measuring an incumbent not measured for a while (drift)."""
        extra = {"runs": 0}
        curves = row["curves"]

        def remeasure(commit: str, side: str) -> float | None:
            extra["runs"] += 1
            watch = self._watcher(abort=False)
            m, _ = self._measure(row["number"], commit, 1000 * extra["runs"], watch, priority=CONFIRM)
            if m.ok:
                curves[side].append(watch.curve if watch else [])
            return m.metric if m.ok else None

        def remeasure_candidate() -> float | None:
            return remeasure(row["commit"], "samples")

        def remeasure_incumbent() -> float | None:
            return remeasure(row["parent_commit"], "incumbent_samples")

        incumbent = self._parent_samples(row["parent_commit"])
        fresh = []
        every = self.options.remeasure_every
        drifting = self.options.accept == "noise" and self.evidence.stale(row["number"], every)
        if drifting and self._is_head(row["parent_commit"]):
            self._show(f"experiment {row['number']}: re-measuring the incumbent", clock=True)
            value = remeasure_incumbent()
            if value is not None:
                self._check_drift(row["number"], incumbent, value)
                fresh = [value]
        self._show(f"experiment {row['number']}: deciding", clock=True)
        decision = self.policy.decide(
            metric,
            incumbent + fresh,
            remeasure_candidate,
            remeasure_incumbent,
            simpler=row["lines_removed"] > row["lines_added"],
            noise=self.evidence.noise,
            largest_gain=self.evidence.largest_gain,
        )
        decision.incumbent[:0] = fresh
        decision.failed += extra["runs"] - decision.extra_runs  # a drift check that failed
        return decision

    def _check_drift(self, number: int, samples: list[float], value: float) -> None:
        """Warn and record on the run when the incumbent now measures beyond the noise of before."""
        sigma = self.evidence.noise
        if not sigma or len(samples) < 2:
            return
        relative = self.evidence.relative
        before = statistics.fmean(math.log(x) for x in samples) if relative else statistics.fmean(samples)
        now_ = math.log(value) if relative else value
        shift = abs(now_ - before) / (sigma * math.sqrt(1 + 1 / len(samples)))
        if shift <= DRIFT_SIGMAS:
            return
        was = math.exp(before) if relative else before
        self.display.say(
            f"warning: the incumbent measures {value:.6g} now, {was:.6g} before ({shift:.1f}σ): "
            "the machine may be throttled or busy; decisions weigh its recent samples"
        )
        drift = (self.history.run(self.tag) or {}).get("drift") or []
        event = {"number": number, "before": was, "now": value, "sigmas": round(shift, 2), "at": now()}
        self.history.update_run(self.tag, drift=drift + [event])

    def _watcher(self, abort: bool) -> EarlyAbort | None:
        """Records a measurement's progress curve; for a candidate's first, may also stop it."""
        if self.target.curve is None:
            return None
        return EarlyAbort(
            self.target.curve,
            self.evidence.recent_curves(),
            self.evidence.curve_groups,
            after=self.options.abort_after,
            enabled=abort and self.options.early_abort,
            work=self.target.curve_work,
        )

    def _is_head(self, commit: str) -> bool:
        with self.writer:
            return commit == self.head

    def _parent_samples(self, parent: str) -> list[float]:
        """A candidate is judged against its parent: the incumbent's recent samples, or (with
        slots) those of the incumbent it was drafted against, if another experiment was kept
        meanwhile (see ``_stale``)."""
        with self.writer:
            if parent == self.head:
                return self.evidence.recent_incumbent()
        kept = [r for r in self.history.experiments(self.tag) if r["commit"] == parent]
        return [s for r in kept if r["status"] in statuses.INCUMBENT for s in r["samples"] or []]

    def _measure(
        self,
        number: int,
        commit: str,
        seed_offset: int = 0,
        watch: EarlyAbort | None = None,
        priority: int = CANDIDATE,
    ) -> tuple[Measurement, Usage]:
        """Measure ``commit`` once on a free slot, by the run's executor (a clean sandboxed
        checkout here, or a Ray task); the experiment's log collects every run. The usage is what
        the harness measured."""
        if self.runner.interrupted.is_set():
            raise Interrupted
        problem = self.cache.problem()
        if problem:
            raise StopRun(problem)
        self.phase = "measure"
        log_path = self.logs / f"{number}.log"
        usage = Usage()
        try:
            with self.slots.take(priority) as slot:
                self.current.slot = slot.index
                seed = self._seed(number, seed_offset)
                job = Job(commit, log_path, self.budget, seed, self.network, slot.env, watch)
                measurement, usage = self.executor.measure(job)
        except CheckoutError as error:  # a full disk: stop; the experiment is measured on resume
            raise StopRun(str(error)) from None
        except Exception as error:  # a bug in the target plugin is a crash, not the end of the run
            measurement = Measurement("crash", reason=f"evaluator error: {type(error).__name__}: {error}")
        finally:
            self.phase = "check"
        measurement.log_path = str(log_path.relative_to(self.ws.root))  # a moved workspace keeps it
        measurement.seconds = usage.seconds
        return measurement, usage

    def _seed(self, number: int, offset: int = 0) -> int | None:
        """The harness-chosen seed of a measurement: fresh for every confirmation run."""
        return self.options.seed + number + offset if self.target.takes_seed else None

    def _with_measurement(self, row: dict, m: Measurement, usage: Usage) -> dict:
        row = row | {
            "metric": m.metric if m.ok else None,
            "samples": [m.metric] if m.ok else [],
            "extras": m.extras,
            "measure_seconds": usage.seconds,
            "measure_cpu_seconds": usage.cpu_seconds,
            "measure_peak_mb": usage.peak_memory_bytes / 2**20,
            "log_path": m.log_path,
            "throughput": _number(m.extras.get(self.target.throughput or "tokens_per_second")),
        }
        if not m.ok:
            status = m.status if m.status in statuses.MEASUREMENT_FAILURES else "crash"
            row |= {"status": status, "reason": m.reason or "crashed"}  # one rule: see measure.py
        return row

    # ---- ending an experiment

    def _discard(self, row: dict, raise_after: bool = False) -> dict:
        """Record a rejected/failed experiment; the run branch stays at its parent."""
        fault("resetting")
        recorded = self._record(row)
        if raise_after:
            raise Interrupted
        return recorded

    def _finish(self, row: dict, keep: bool) -> dict:
        """Apply a decision to git (idempotent, so a resumed run can repeat it) and record it.

        A keep moves the run branch from the parent to the commit, compare-and-swap: a branch
        someone else moved stops the run (the decision stays pending, so nothing is lost)."""
        fault("resetting")
        with self.writer:
            if keep and self.ws.branch_commit(self.branch) != row["commit"]:
                try:
                    self.ws.move_branch(self.branch, row["commit"], row["parent_commit"])
                except BranchMoved as moved:
                    raise StopRun(str(moved)) from None
            if keep:
                self.head = row["commit"]
            return self._record(row)

    def _record(self, row: dict) -> dict:
        with self.writer:
            recorded = self.history.experiment(self.tag, row["number"])
            return recorded if recorded else self._write(row)

    def _write(self, row: dict) -> dict:
        row = dict(row)
        note = row.pop("_note", None)
        if note:  # e.g. the agent's changes outside the editable files were reverted
            row["reason"] = f"{row['reason']}; agent: {note}" if row["reason"] else f"agent: {note}"
        started = row.pop("_started", None)
        if started is not None:
            row["total_seconds"] = time.monotonic() - started
        recorded = self.history.record(row)
        self._learn(recorded)
        attempt = recorded["commit"] != recorded["parent_commit"]  # a baseline measures its parent
        if self.descriptions is not None and attempt and recorded["description"]:
            self.descriptions.append(recorded["description"])
        if self.observer:
            self.observer(self.history.run(self.tag), recorded, self.display.say)
        self._report(recorded)
        return recorded

    def _row(self, number, parent, commit, status, description, started) -> dict:
        return {
            "run": self.tag,
            "number": number,
            "status": status,
            "parent_commit": parent,
            "commit": commit,
            "description": description,
            "seed": self._seed(number),
            "agent": None if number == 0 else self.agent.name,
            "model": None if number == 0 else self.agent.model_name(),
            "started_at": now(),
            "_started": started,
        }

    # ---- brief, display, signals

    def preview_brief(self, seed: int) -> str:
        """The brief's text for the next experiment, from a throwaway checkout of the incumbent."""
        head = self.ws.branch_commit(self.branch) or self.ws.head()
        with self.checkouts.measurement(head) as checkout:
            return self.brief(seed, checkout.root, self.ws.files_at(head)).text

    def brief(self, seed: int, root: Path | None = None, tracked: list[str] | None = None) -> Brief:
        """The agent's brief, on the draft checkout unless ``root`` (and its ``tracked`` files)."""
        root = root or self.draft.root
        tracked = tracked if tracked is not None else self.draft.tracked_files()
        s = self.options.brief
        incumbent = self.history.incumbent(self.tag)
        failures = self.history.recent(self.tag, 1, statuses.SHOWN_FAILURES)
        values = brief_values(
            root,
            self.target,
            tracked,
            self.history.recent(self.tag, s.history),
            self.history.recent(self.tag, s.discarded, ("discard",)),
            incumbent,
            failures[0] if failures else None,
            self.budget,
            (self.history.run(self.tag) or {}).get("noise"),
            s,
        )
        last = self.history.recent(self.tag, 1)
        return Brief(
            text=render(program_text(root, self.target), values),
            root=root,
            editable=editable_paths(self.target, tracked),
            protected=[p for p in tracked if checks.matches(p, self.target.protected)],
            descriptions=self._descriptions(),
            last_log=self.ws.root / last[0]["log_path"] if last and last[0]["log_path"] else None,
            seed=seed,
        )

    def _learn(self, row: dict) -> None:
        """Feed a recorded decision to the evidence; store a changed noise estimate with the run."""
        if row["status"] not in statuses.DECIDED:
            return
        before = self.evidence.noise
        if row["status"] not in statuses.INCUMBENT and row["parent_commit"] != self.head:
            # (slots) re-measurements of an earlier incumbent are not evidence about this one
            curves = {k: v for k, v in (row.get("curves") or {}).items() if k != "incumbent_samples"}
            row = row | {"incumbent_samples": [], "curves": curves}
        self.evidence.add(row)
        if self.evidence.noise != before:
            self.history.update_run(self.tag, noise=self.evidence.noise)

    def _descriptions(self) -> list[str]:
        """Every earlier attempt's description, read once, then kept up to date by ``_record``."""
        if self.descriptions is None:
            self.descriptions = self.history.descriptions(self.tag)
        return self.descriptions

    def _show(self, text: str, clock: bool = False) -> None:
        """The live line: experiment and phase, incumbent metric, last result (+ elapsed/budget)."""
        incumbent = self.history.incumbent(self.tag)
        best = f" | best {incumbent['metric']:.6g}" if incumbent else ""
        last = f" | last: {self.last_result}" if self.last_result else ""
        pace = self.history.pace(self.tag)
        rate = f" | {pace.per_hour:,.1f} exp/h" if pace.per_hour else ""
        phase_clock = self._phase_clock if clock else None
        self.display.set_status(text + best + last + rate, phase_clock, pace.measure_seconds)

    def _phase_clock(self) -> str:
        """The evaluator's phase and its elapsed time against that phase's allowance."""
        clock = self.runner.clock
        if clock is None:
            return ""
        return clock.status(time.monotonic())

    def _report(self, row: dict) -> None:
        metric = "—" if row["metric"] is None else f"{row['metric']:.6g}"
        self.last_result = f"{row['status']} {metric}"
        reason = f" ({row['reason']})" if row["reason"] and row["status"] != "keep" else ""
        self.display.say(
            f"[{row['number']:>3}] {row['status']:<11} {self.target.metric.name}={metric}  "
            f"{row['description'] or ''}{reason}"[:200]
        )

    def _summarise(self, summary: Summary) -> None:
        rows = self.history.experiments(self.tag)
        baseline = next((r for r in rows if r["status"] == "baseline"), None)
        incumbent = self.history.incumbent(self.tag)
        summary.baseline = baseline["metric"] if baseline else None
        summary.best = incumbent["metric"] if incumbent else None
        for line in summary.lines(self.target.metric.name):
            self.display.say(line)

    def _evaluator_started(self, pid: int | None) -> None:
        """Remember the evaluator's process group so a resumed run can reap it after a kill."""
        with self.writer:
            pending = self.history.pending(self.tag, getattr(self.current, "number", None))
            if pending:
                pending.pgid = pid
                self.history.set_pending(self.tag, pending)
        if pid:
            fault("measuring")

    def _on_signal(self, signum, frame) -> None:
        self.runner.interrupt()  # every slot's evaluator stops, and is recorded ``interrupted``
        if self.parallel:  # raised only into the scheduler's wait, once
            if self.scheduling and not self.interrupting:
                self.interrupting = True
                raise Interrupted
        elif self.phase == "propose":
            raise Interrupted


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _changed_paths(diff: str) -> set[str]:
    return {line[6:] for line in diff.splitlines() if line.startswith("+++ b/")}


def default_tag() -> str:
    """Like the original's run tags: the month and day, e.g. ``nov30``."""
    return time.strftime("%b%d").lower()
