"""The SQLite ledger (sqlite-utils): migrations, writes and queries. Nothing else."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

SQLITE_MAGIC = b"SQLite format 3\x00"
STATUSES = ("baseline", "keep", "discard", "invalid", "crash", "timeout", "interrupted", "agent_error")
INCUMBENT_STATUSES = ("baseline", "keep")
JSON_COLUMNS = ("samples", "incumbent_samples", "extras", "options", "machine", "state", "curves", "drift")

migrations = Migrations("autoresearch")


@migrations()
def m001_runs_and_experiments(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "tag": str,
            "target": str,
            "agent": str,
            "options": str,  # JSON: every option the run was started with
            "machine": str,  # JSON: host, python, platform, torch/GPU where known
            "noise": float,  # estimated standard deviation of one measurement
            "started_at": str,
            "ended_at": str,
        },
        pk="tag",
    )
    db["experiments"].create(
        {
            "id": int,
            "run": str,
            "number": int,
            "status": str,
            "reason": str,
            "description": str,
            "parent_commit": str,
            "commit": str,
            "diff": str,
            "diff_sha": str,
            "lines_added": int,
            "lines_removed": int,
            "metric": float,
            "samples": str,  # JSON list: every measurement of this candidate
            "incumbent_samples": str,  # JSON list: re-measurements of the incumbent while deciding
            "gain": float,  # estimated improvement over the incumbent (positive is better)
            "extra_runs": int,  # measurements beyond the first (confirmation runs)
            "extras": str,  # JSON object: the other parsed key/values
            "seed": int,
            "propose_seconds": float,
            "measure_seconds": float,
            "total_seconds": float,
            "input_tokens": int,
            "output_tokens": int,
            "cache_write_tokens": int,
            "cache_read_tokens": int,
            "cost_usd": float,
            "log_path": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        foreign_keys=[("run", "runs", "tag")],
    )
    db["experiments"].create_index(["run", "number"], unique=True)
    db["experiments"].create_index(["run", "diff_sha"])
    db["experiments"].create_index(["run", "status", "number"])
    # The experiment in flight, so a killed harness can resume it (one row per run at most).
    db["pending"].create(
        {"run": str, "number": int, "phase": str, "state": str, "updated_at": str},
        pk="run",
        foreign_keys=[("run", "runs", "tag")],
    )


@migrations()
def m002_decisions_curves_throughput_drift(db: sqlite_utils.Database) -> None:
    # JSON {"samples": [curve, ...], "incumbent_samples": [curve, ...]}, parallel to those lists;
    # a curve is [[frac, value], ...] of the target's progress key (early abort compares them).
    db["experiments"].add_column("curves", str)
    db["experiments"].add_column("throughput", float)  # the evaluator's speed (e.g. tokens/s)
    db["runs"].add_column("drift", str)  # JSON list: incumbent drifts beyond the noise, as found


class LedgerError(Exception):
    """The ledger file is not ours or is damaged; it is never overwritten."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _decode(row: dict | None) -> dict | None:
    if row is None:
        return None
    for key in JSON_COLUMNS:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def _check_file(path: Path) -> None:
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(16) != SQLITE_MAGIC:
                raise LedgerError(f"{path} is not an SQLite database; move it aside and run again")


class History:
    """The ledger at ``path``, created and migrated on open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _check_file(self.path)
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self.db = sqlite_utils.Database(conn)
            self._check_foreign()
            migrations.apply(self.db)
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{self.path} is damaged ({error}); move it aside and run again") from None

    def _check_foreign(self) -> None:
        tables = set(self.db.table_names())
        ours = {"runs", "experiments", "pending", Migrations.migrations_table}
        if tables and not tables & ours:
            raise LedgerError(
                f"{self.path} holds other tables ({', '.join(sorted(tables))}); "
                "it is not an autoresearch ledger: move it aside and run again"
            )

    def close(self) -> None:
        self.db.conn.close()

    # ---- runs

    def run(self, tag: str) -> dict | None:
        rows = list(self.db["runs"].rows_where("tag = ?", [tag]))
        return _decode(rows[0]) if rows else None

    def latest_run(self) -> dict | None:
        rows = list(self.db["runs"].rows_where(order_by="started_at desc", limit=1))
        return _decode(rows[0]) if rows else None

    def create_run(self, tag: str, target: str, agent: str, options: dict, machine: dict) -> dict:
        self.db["runs"].insert(
            {
                "tag": tag,
                "target": target,
                "agent": agent,
                "options": json.dumps(options),
                "machine": json.dumps(machine),
                "started_at": now(),
            }
        )
        return self.run(tag)

    def update_run(self, tag: str, **values) -> None:
        for key in JSON_COLUMNS:
            if key in values:
                values[key] = json.dumps(values[key])
        self.db["runs"].update(tag, values)

    # ---- experiments

    def experiments(self, tag: str, status: str | None = None) -> list[dict]:
        where, args = "run = ?", [tag]
        if status:
            where, args = where + " and status = ?", args + [status]
        rows = self.db["experiments"].rows_where(where, args, order_by="number")
        return [_decode(row) for row in rows]

    def experiment(self, tag: str, number: int) -> dict | None:
        rows = list(self.db["experiments"].rows_where("run = ? and number = ?", [tag, number]))
        return _decode(rows[0]) if rows else None

    def recent(self, tag: str, limit: int, statuses: tuple[str, ...] = ()) -> list[dict]:
        """The last ``limit`` experiments (oldest first), optionally of some statuses only."""
        where, args = "run = ?", [tag]
        if statuses:
            where += f" and status in ({', '.join('?' * len(statuses))})"
            args += list(statuses)
        rows = self.db["experiments"].rows_where(where, args, order_by="number desc", limit=limit)
        return [_decode(row) for row in rows][::-1]

    def incumbent(self, tag: str) -> dict | None:
        rows = self.recent(tag, 1, INCUMBENT_STATUSES)
        return rows[0] if rows else None

    def next_number(self, tag: str) -> int:
        row = self.db.execute("select max(number) from experiments where run = ?", [tag]).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def count(self, tag: str, statuses: tuple[str, ...] = ()) -> int:
        where, args = "run = ?", [tag]
        if statuses:
            where += f" and status in ({', '.join('?' * len(statuses))})"
            args += list(statuses)
        return self.db["experiments"].count_where(where, args)

    def has_diff(self, tag: str, diff_sha: str) -> int | None:
        """The number of an earlier attempt with exactly this diff, if any."""
        row = self.db.execute(
            "select number from experiments where run = ? and diff_sha = ? limit 1", [tag, diff_sha]
        ).fetchone()
        return row[0] if row else None

    def descriptions(self, tag: str) -> list[str]:
        rows = self.db.execute(
            "select description from experiments where run = ? and number > 0 order by number", [tag]
        )
        return [row[0] for row in rows if row[0]]

    def total_cost(self, tag: str) -> float:
        row = self.db.execute("select sum(cost_usd) from experiments where run = ?", [tag]).fetchone()
        return row[0] or 0.0

    def record(self, row: dict) -> dict:
        """Write one finished experiment and clear the run's pending state, in one transaction."""
        row = dict(row, finished_at=now())
        for key in JSON_COLUMNS:
            if key in row and not isinstance(row[key], str):
                row[key] = json.dumps(row[key])
        columns = ", ".join(f"[{key}]" for key in row)
        conn = self.db.conn
        conn.execute("begin immediate")
        try:
            conn.execute(
                f"insert into experiments ({columns}) values ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            conn.execute("delete from pending where run = ?", [row["run"]])
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        return self.experiment(row["run"], row["number"])

    # ---- the experiment in flight

    def set_pending(self, tag: str, number: int, phase: str, state: dict) -> None:
        self.db["pending"].upsert(
            {"run": tag, "number": number, "phase": phase, "state": json.dumps(state), "updated_at": now()},
            pk="run",
        )

    def pending(self, tag: str) -> dict | None:
        rows = list(self.db["pending"].rows_where("run = ?", [tag]))
        return _decode(rows[0]) if rows else None

    def clear_pending(self, tag: str) -> None:
        self.db.execute("delete from pending where run = ?", [tag])


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, for ``autoresearch sql``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def export_tsv(experiments: list[dict], metric: str) -> str:
    """The original ``results.tsv`` layout: commit, metric, memory_gb, status, description."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["commit", metric, "memory_gb", "status", "description"])
    for row in experiments:
        extras = row.get("extras") or {}
        peak_mb = extras.get("peak_vram_mb")
        memory_gb = f"{peak_mb / 1024:.1f}" if isinstance(peak_mb, (int, float)) else "0.0"
        value = f"{row['metric']:.6f}" if row.get("metric") is not None else "0.000000"
        description = (row.get("description") or "").replace("\t", " ").replace("\n", " ")
        writer.writerow([(row.get("commit") or "")[:7], value, memory_gb, row["status"], description])
    return out.getvalue()
