"""The SQLite ledger (sqlite-utils): migrations, writes and queries. Nothing else."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import statistics
import threading
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .statuses import INCUMBENT

SQLITE_MAGIC = b"SQLite format 3\x00"
JSON_COLUMNS = ("samples", "incumbent_samples", "extras", "options", "machine", "state", "curves", "drift")
TABLES = ("runs", "experiments", "pending", "invocations")
BUSY_SECONDS = 30.0  # how long a write waits for another process's

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
def m002_run_metric_and_experiment_tree(db: sqlite_utils.Database) -> None:
    db["runs"].add_column("metric", str)  # the metric's name, e.g. val_bpb
    db["runs"].add_column("direction", str)  # lower or higher is better
    db["experiments"].add_column("tree", str)  # git tree of the measured commit: repeats are found by it
    db["experiments"].create_index(["run", "tree"])
    # Log paths become relative to the workspace, so a moved workspace keeps them.
    db.execute(
        "update experiments set log_path = substr(log_path, instr(log_path, '/.autoresearch/') + 1) "
        "where log_path like '/%/.autoresearch/logs/%'"
    )


@migrations()
def m003_measured_usage(db: sqlite_utils.Database) -> None:
    """What the harness itself measured of an experiment's first measurement (not the evaluator)."""
    db["experiments"].add_column("measure_cpu_seconds", float)  # CPU of the whole process tree
    db["experiments"].add_column("measure_peak_mb", float)  # peak resident memory of the tree


@migrations()
def m003_decisions_curves_throughput_drift(db: sqlite_utils.Database) -> None:
    # JSON {"samples": [curve, ...], "incumbent_samples": [curve, ...]}, parallel to those lists;
    # a curve is [[frac, value], ...] of the target's progress key (early abort compares them),
    # [[frac, value, work], ...] where the target also counts the work done (curve_work).
    db["experiments"].add_column("curves", str)
    db["experiments"].add_column("throughput", float)  # the evaluator's speed (e.g. tokens/s)
    db["runs"].add_column("drift", str)  # JSON list: incumbent drifts beyond the noise, as found


# ---- views (issue 13): who proposed each experiment, and every invocation of a run


@migrations()
def m_views_agents_and_invocations(db: sqlite_utils.Database) -> None:
    db["experiments"].add_column("agent", str)  # a resumed run may use another agent
    db["experiments"].add_column("model", str)
    db["invocations"].create(
        {
            "id": int,
            "run": str,
            "agent": str,
            "model": str,
            "options": str,  # JSON: the options of this invocation
            "started_at": str,
            "ended_at": str,
        },
        pk="id",
        foreign_keys=[("run", "runs", "tag")],
    )
    db["invocations"].create_index(["run", "started_at"])


@migrations()
def m004_slots_pending_per_experiment(db: sqlite_utils.Database) -> None:
    """Parallel slots: where each experiment was measured, and one pending row per experiment in
    flight (several at once), keyed by its number."""
    db["experiments"].add_column("slot", int)  # the slot of its first measurement (0 with one slot)
    db["experiments"].add_column("host", str)  # the machine that measured it
    db["pending"].transform(pk=("run", "number"))


@dataclass
class Pace:
    per_hour: float | None  # experiments per hour of busy time
    measure_seconds: float | None  # the median duration of recent measurements


class LedgerError(Exception):
    """The ledger cannot be used as it is (not ours, damaged, newer, read-only, gone); never overwritten."""


@dataclass
class Pending:
    """An experiment in flight, so that a killed harness can resume it (one row per experiment)."""

    number: int
    phase: str  # propose, measure or decided
    parent: str  # the incumbent it started from
    commit: str | None = None  # the candidate, once committed
    pgid: int | None = None  # the evaluator's process group while it runs, reaped on resume
    row: dict | None = None  # decided: the row to record
    keep: bool | None = None  # decided: the decision to apply


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _decode(row: dict | None) -> dict | None:
    if row is None:
        return None
    for key in JSON_COLUMNS:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LedgerError(f"{path.parent} cannot be created ({error.strerror}); make it writable") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise LedgerError(
            f"{path} cannot be written (read-only file or folder); make {path.parent} writable and run again"
        )


def _check_file(path: Path) -> None:
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(16) != SQLITE_MAGIC:
                raise LedgerError(f"{path} is not an SQLite database; move it aside and run again")


class History:
    """The ledger at ``path``, created and migrated on open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        _check_writable(self.path)
        self._local = threading.local()  # one connection per thread (slots run in threads)
        _check_file(self.path)
        try:
            self._check_foreign()
            self._check_newer()
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{self.path} is damaged ({error}); move it aside and run again") from None
        self.identity = os.stat(self.path)  # the file every write must still go to

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection: SQLite itself serialises the writes of the run's threads."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite_utils.Database(self._connect())
        return db

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        _write_ahead(conn)
        return conn

    @classmethod
    def reader(cls, path: Path) -> History:
        """The ledger opened read-only, for views (``History(path)`` migrates it first)."""
        history = cls.__new__(cls)
        history.path = Path(path)
        history._local = threading.local()
        history._connect = lambda: read_only(history.path)
        return history

    def data_version(self) -> int:
        """Changes whenever another connection commits to the ledger (SQLite's ``data_version``)."""
        return self.db.execute("pragma data_version").fetchone()[0]

    def _check_foreign(self) -> None:
        tables = set(self.db.table_names())
        ours = {*TABLES, Migrations.migrations_table}
        if tables and not tables & ours:
            raise LedgerError(
                f"{self.path} holds other tables ({', '.join(sorted(tables))}); "
                "it is not an autoresearch ledger: move it aside and run again"
            )

    def _check_newer(self) -> None:
        """Refuse a ledger migrated by a newer release: its schema is not the one written here."""
        known = {m.name for m in migrations.pending(sqlite_utils.Database(memory=True))}
        unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
        if unknown:
            raise LedgerError(
                f"{self.path} was written by a newer autoresearch (migration {unknown[0]}); "
                "upgrade autoresearch to use it"
            )

    def _migrate(self) -> None:
        """Apply pending migrations under a write lock: of two processes opening a new ledger at
        once (``run`` and ``log``), one migrates and the other then finds nothing left to do."""
        if not migrations.pending(self.db):
            return
        self.db.conn.execute("begin immediate")
        try:
            migrations.apply(self.db)
            self.db.conn.execute("commit")
        except BaseException:
            self.db.conn.execute("rollback")
            raise

    def _check_intact(self) -> None:
        """Before each write: a ledger deleted or replaced under a run would silently lose every row."""
        try:
            intact = os.path.samestat(os.stat(self.path), self.identity)
        except FileNotFoundError:
            intact = False
        if not intact:
            raise LedgerError(
                f"{self.path} was deleted or replaced while the run was going, so nothing more "
                "could be recorded; the run stops here (git keeps every commit)"
            )

    def close(self) -> None:
        self.db.conn.close()
        self._local.db = None

    # ---- runs

    def run(self, tag: str) -> dict | None:
        rows = list(self.db["runs"].rows_where("tag = ?", [tag]))
        return _decode(rows[0]) if rows else None

    def latest_run(self) -> dict | None:
        rows = list(self.db["runs"].rows_where(order_by="started_at desc", limit=1))
        return _decode(rows[0]) if rows else None

    def create_run(
        self, tag: str, target: str, agent: str, options: dict, machine: dict, metric: str, direction: str
    ) -> dict:
        self._check_intact()
        self.db["runs"].insert(
            {
                "tag": tag,
                "target": target,
                "agent": agent,
                "metric": metric,
                "direction": direction,
                "options": json.dumps(options),
                "machine": json.dumps(machine),
                "started_at": now(),
            }
        )
        return self.run(tag)

    def runs(self) -> list[dict]:
        """Every run of the workspace, oldest first, with its experiment and kept counts."""
        rows = self.db.query(
            "select runs.*, count(e.id) as experiments, sum(e.status = 'keep') as kept "
            "from runs left join experiments e on e.run = runs.tag group by runs.tag order by started_at"
        )
        return [_decode(row) for row in rows]

    def start_invocation(self, tag: str, agent: str, model: str | None, options: dict) -> int:
        self._check_intact()
        table = self.db["invocations"]
        table.insert(
            {"run": tag, "agent": agent, "model": model, "options": json.dumps(options), "started_at": now()}
        )
        return table.last_pk

    def end_invocation(self, invocation: int) -> None:
        self._check_intact()
        self.db["invocations"].update(invocation, {"ended_at": now()})

    def invocations(self, tag: str) -> list[dict]:
        return [_decode(row) for row in self.db["invocations"].rows_where("run = ?", [tag], order_by="id")]

    def update_run(self, tag: str, **values) -> None:
        self._check_intact()
        for key in JSON_COLUMNS:
            if key in values:
                values[key] = json.dumps(values[key])
        self.db["runs"].update(tag, values)

    # ---- experiments

    def experiments(self, tag: str, status: str | None = None, after_id: int = 0) -> list[dict]:
        """A run's experiments by number; ``after_id`` gives only rows written after that one."""
        where, args = "run = ? and id > ?", [tag, after_id]
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
        """The last experiment kept, in the order they were recorded (with slots, numbers are
        handed out when proposing, so a later number can be kept first)."""
        where = f"run = ? and status in ({', '.join('?' * len(INCUMBENT))})"
        rows = list(self.db["experiments"].rows_where(where, [tag, *INCUMBENT], order_by="id desc", limit=1))
        return _decode(rows[0]) if rows else None

    def next_number(self, tag: str) -> int:
        row = self.db.execute("select max(number) from experiments where run = ?", [tag]).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def measured_tree(self, tag: str, tree: str) -> int | None:
        """The number of an earlier experiment that measured exactly this code (git tree), if any."""
        row = self.db.execute(
            "select number from experiments where run = ? and tree = ? and status != 'interrupted' limit 1",
            [tag, tree],
        ).fetchone()
        return row[0] if row else None

    def fill_trees(self, tag: str, tree_of) -> None:
        """Give rows written before trees were recorded theirs, ``tree_of(commit)``, so that a
        repeat of one is found too."""
        rows = self.db.execute(
            "select id, [commit] from experiments where run = ? and tree is null and [commit] is not null",
            [tag],
        ).fetchall()
        if rows:
            self._check_intact()
        for row_id, commit in rows:
            with suppress(ValueError):  # a commit git no longer has keeps no tree
                self.db["experiments"].update(row_id, {"tree": tree_of(commit)})

    def descriptions(self, tag: str) -> list[str]:
        """Every attempt's description; a baseline, which measures its parent unchanged, is none."""
        rows = self.db.execute(
            "select description from experiments where run = ? and [commit] is not parent_commit "
            "order by number",
            [tag],
        )
        return [row[0] for row in rows if row[0]]

    def pace(self, tag: str, window: int = 10) -> Pace:
        """Experiments per hour of the run's busy time, and a measurement's usual duration."""
        count, busy = self.db.execute(
            "select count(*), sum(total_seconds) from experiments where run = ? and number > 0", [tag]
        ).fetchone()
        recent = [
            row[0]
            for row in self.db.execute(
                "select measure_seconds from experiments where run = ? and metric is not null "
                "and measure_seconds is not null order by number desc limit ?",
                [tag, window],
            )
        ]
        return Pace(count / busy * 3600 if busy else None, statistics.median(recent) if recent else None)

    def total_cost(self, tag: str) -> float:
        row = self.db.execute("select sum(cost_usd) from experiments where run = ?", [tag]).fetchone()
        return row[0] or 0.0

    def record(self, row: dict) -> dict:
        """Write one finished experiment and clear its pending state, in one transaction."""
        self._check_intact()
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
            conn.execute("delete from pending where run = ? and number = ?", [row["run"], row["number"]])
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        return self.experiment(row["run"], row["number"])

    # ---- the experiments in flight (one row each)

    def set_pending(self, tag: str, pending: Pending) -> None:
        self._check_intact()
        state = asdict(pending)
        number, phase = state.pop("number"), state.pop("phase")
        self.db.execute(
            "insert or replace into pending (run, number, phase, state, updated_at) values (?, ?, ?, ?, ?)",
            [tag, number, phase, json.dumps(state), now()],
        )

    def pendings(self, tag: str) -> list[Pending]:
        """Every experiment in flight, by number."""
        rows = self.db["pending"].rows_where("run = ?", [tag], order_by="number")
        return [Pending(row["number"], row["phase"], **row["state"]) for row in map(_decode, rows)]

    def pending(self, tag: str, number: int | None = None) -> Pending | None:
        """The experiment ``number`` in flight (default: the first one), if any."""
        rows = [p for p in self.pendings(tag) if number is None or p.number == number]
        return rows[0] if rows else None

    def pending_row(self, tag: str) -> dict | None:
        """The first pending row as stored (with ``updated_at``), for views."""
        rows = list(self.db["pending"].rows_where("run = ?", [tag], order_by="number", limit=1))
        return _decode(rows[0]) if rows else None

    def clear_pending(self, tag: str, number: int | None = None) -> None:
        """Forget experiment ``number`` in flight (default: every one of the run)."""
        self._check_intact()
        if number is None:
            self.db.execute("delete from pending where run = ?", [tag])
        else:
            self.db.execute("delete from pending where run = ? and number = ?", [tag, number])


def _write_ahead(conn: sqlite3.Connection) -> None:
    """Put the ledger in WAL mode (readers never block the run's writes). Of processes opening a
    new ledger at once, all but one get "database is locked" at once, without SQLite's busy wait:
    wait here instead, until the one that switched it is done."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, for ``autoresearch sql``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_SECONDS)
    conn.row_factory = sqlite3.Row
    conn.set_authorizer(_no_attach)
    return conn


def _no_attach(action: int, *_) -> int:
    """ATTACH (and VACUUM INTO, which attaches) would create files wherever the query says."""
    return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_ATTACH else sqlite3.SQLITE_OK


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
