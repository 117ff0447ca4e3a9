"""Who measures what, and when: several experiments in flight at once.

Each experiment in flight runs ``Engine._experiment`` (its whole story, top to bottom) in a thread
of its own, with a draft checkout of its own; its measurements wait for a free slot
(``slots.SlotPool``; confirmation runs first). At most ``slots + ahead`` experiments are in flight,
so while ``slots`` are measured, up to ``ahead`` proposals are drafted and wait. Every write of git
refs and the ledger goes through the engine's ``writer`` lock: the driver stays the one writer.

The main thread only hands out numbers and waits, polling, so that Ctrl-C lands here: it stops
every slot (the runner kills every evaluator, each is recorded ``interrupted``), and a proposal
still with its agent after a grace is recorded ``interrupted`` by the main thread. A limit
(``--max-experiments``, ``--max-hours``, ``--max-cost``) stops new work and lets what is in flight
finish; Ctrl-C then stops it.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .agent import AgentExhausted
from .engine import Engine, Interrupted, StopRun, Summary
from .history import now
from .workspace import Workspace

POLL_SECONDS = 0.2
GRACE_SECONDS = 10.0  # how long a Ctrl-C waits for slots to record themselves


class Scheduler:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.capacity = engine.slots.size + engine.ahead
        self.in_flight: dict[Future, tuple[int, Workspace, float]] = {}  # -> number, draft, started
        self.exhausted = False  # the agent has nothing left to propose

    def loop(self, summary: Summary) -> None:
        engine = self.engine
        made = [engine.checkouts.draft(engine.head, f"draft-{i + 1}") for i in range(self.capacity)]
        drafts = list(made)  # the free ones
        pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="slot")
        started, launched, error = time.monotonic(), 0, None
        try:
            while True:
                if engine.runner.interrupted.is_set():
                    raise Interrupted
                limit = engine._limit_reached(launched, started)
                if limit and not summary.stopped_because:
                    summary.stopped_because = limit
                new_work = not limit and error is None and not self.exhausted
                while new_work and len(self.in_flight) < self.capacity:
                    number = engine.next_number()
                    draft = drafts.pop()
                    future = pool.submit(self._experiment, number, draft)
                    self.in_flight[future] = (number, draft, time.monotonic())
                    launched += 1
                    new_work = not engine._limit_reached(launched, started)
                if not self.in_flight:
                    break
                engine.scheduling = True
                try:
                    done, _ = wait(self.in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                finally:
                    engine.scheduling = False
                for future in done:
                    entry = self.in_flight.pop(future)
                    drafts.append(entry[1])
                    error = self._collect(future, entry, summary) or error
            if error:
                raise StopRun(error)
        except Interrupted:
            engine.runner.interrupt()
            self._record_interrupted(summary)
            raise
        except StopRun:
            engine.runner.interrupt()  # the run stops: nothing else is measured
            self._record_interrupted(summary)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for draft in made:  # each slot's draft; the run's own ``draft`` stays to be read
                engine.checkouts.remove_draft(draft)

    def _experiment(self, number: int, draft: Workspace) -> dict:
        try:
            return self.engine._experiment(number, draft)
        finally:  # this thread's git helpers (each thread has its own: see Workspace.repo)
            draft.close()
            self.engine.ws.close()

    def _collect(self, future: Future, entry: tuple, summary: Summary) -> str | None:
        """Count a finished experiment; the reason the run must stop, if it must."""
        try:
            row = future.result()
        except Interrupted:  # its thread recorded it, unless it was stopped before it could
            self._interrupted(entry)
            return None
        except AgentExhausted as done:  # no new work; what is in flight finishes
            summary.stopped_because = f"agent {self.engine.agent.name} has nothing left to propose ({done})"
            self.exhausted = True
            return None
        except StopRun as stop:
            return str(stop)
        except Exception as error:  # a bug or a broken checkout: stop, the ledger stays whole
            return f"{type(error).__name__}: {error}"
        summary.experiments += 1
        summary.kept += row["status"] == "keep"
        return None

    def _record_interrupted(self, summary: Summary) -> None:
        """Let every slot record itself, then record ``interrupted`` for what is still out (an
        agent still proposing): every number handed out gets its row."""
        done, _ = wait(self.in_flight, timeout=GRACE_SECONDS)
        for future, entry in self.in_flight.items():
            if future in done:
                self._collect(future, entry, summary)
            else:
                self._interrupted(entry)
        self.in_flight.clear()

    def _interrupted(self, entry: tuple) -> None:
        """Record experiment ``number`` as ``interrupted`` unless it has its row already."""
        number, _, began = entry
        engine = self.engine
        pending = engine.history.pending(engine.tag, number)
        parent = pending.parent if pending else engine.head
        stage = "before it was measured" if pending and pending.phase == "measure" else "during the proposal"
        row = engine._row(number, parent, None, "interrupted", None, began)
        engine._record(row | {"reason": f"stopped {stage}", "started_at": now()})
