"""A run as the views see it: its rows, the running best, the kept improvements and the KPIs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .. import statuses

FAILED = tuple(status for status in statuses.ALL if status not in statuses.DECIDED)  # the chart's rug


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@dataclass
class RunView:
    """One run's ledger rows, read once, with what every view derives from them."""

    run: dict
    metric: str
    direction: str  # "lower" or "higher"
    rows: list[dict] = field(default_factory=list)
    root: Path = Path(".")  # the workspace: log paths are relative to it

    def add(self, rows: list[dict]) -> None:
        """New rows (a live view adds them as they land)."""
        self.rows = sorted(self.rows + rows, key=lambda row: row["number"])

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "lower" else a > b

    def improvement(self, before: float, after: float) -> float:
        """How much ``after`` beats ``before`` (positive is better), in the metric's units."""
        return before - after if self.direction == "lower" else after - before

    @property
    def baseline(self) -> dict | None:
        return next((row for row in self.rows if row["status"] == "baseline"), None)

    @property
    def incumbents(self) -> list[dict]:
        """The baseline and every keep, in order: the running best."""
        return [row for row in self.rows if row["status"] in statuses.INCUMBENT]

    @property
    def best(self) -> dict | None:
        return self.incumbents[-1] if self.incumbents else None

    @property
    def noise(self) -> float | None:
        return self.run.get("noise")

    def log_file(self, row: dict) -> Path | None:
        return self.root / row["log_path"] if row.get("log_path") else None

    def improvements(self) -> list[dict]:
        """Each keep with its gain over the previous incumbent and that gain in units of noise."""
        out, previous = [], None
        for row in self.incumbents:
            if previous is not None and row["metric"] is not None and previous["metric"] is not None:
                gain = self.improvement(previous["metric"], row["metric"])
                sigmas = gain / self.noise if self.noise else None
                out.append({"row": row, "before": previous["metric"], "gain": gain, "sigmas": sigmas})
            previous = row
        return out

    def kpis(self) -> dict:
        """The numbers on the cards: baseline -> best, rates, throughput, spending, noise."""
        experiments = [row for row in self.rows if row["status"] != "baseline"]
        n = len(experiments)

        def rate(*statuses: str) -> float | None:
            return sum(row["status"] in statuses for row in experiments) / n if n else None

        baseline, best = self.baseline, self.best
        change = None
        if baseline and best and baseline["metric"]:
            change = (best["metric"] - baseline["metric"]) / abs(baseline["metric"]) * 100
        busy = sum(row.get("total_seconds") or 0 for row in experiments)
        tokens = sum(
            (row.get(key) or 0)
            for row in self.rows
            for key in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")
        )
        return {
            "metric": self.metric,
            "direction": self.direction,
            "baseline": baseline["metric"] if baseline else None,
            "best": best["metric"] if best else None,
            "change_percent": change,
            "experiments": n,
            "kept": sum(row["status"] == "keep" for row in experiments),
            "keep_rate": rate("keep"),
            "crash_rate": rate("crash", "timeout"),
            "invalid_rate": rate("invalid"),
            "experiments_per_hour": n / (busy / 3600) if busy else None,
            "evaluator_hours": sum(row.get("measure_seconds") or 0 for row in self.rows) / 3600,
            "tokens": tokens,
            "cost_usd": sum(row.get("cost_usd") or 0 for row in self.rows),
            "noise": self.noise,
        }


def load(history, tag: str, metric: str, direction: str) -> RunView:
    """Read a run from the ledger (``history`` is a ``History``); the run's own metric and direction
    win over the given ones (runs recorded before m002 have none)."""
    run = history.run(tag)
    metric, direction = run.get("metric") or metric, run.get("direction") or direction
    return RunView(run, metric, direction, history.experiments(tag), workspace_of(history.path))


def workspace_of(ledger: Path) -> Path:
    """The workspace of ``<workspace>/.autoresearch/history.db``."""
    return Path(ledger).resolve().parent.parent
