"""The SQLite ledger and the commands that read it."""

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils

from autoresearch.history import History, LedgerError, Pending, export_tsv, migrations

from conftest import invoke


def test_migrations_build_the_schema_in_memory():
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    assert {"runs", "experiments", "pending"} <= set(db.table_names())
    columns = db["experiments"].columns_dict
    for name in (
        "run",
        "number",
        "parent_commit",
        "commit",
        "description",
        "diff",
        "metric",
        "samples",
        "extras",
        "status",
        "reason",
        "propose_seconds",
        "measure_seconds",
        "total_seconds",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "log_path",
    ):
        assert name in columns
    assert {"tag", "target", "agent", "options", "started_at", "ended_at", "machine"} <= set(
        db["runs"].columns_dict
    )
    migrations.apply(db)  # idempotent
    assert [m.name for m in migrations.applied(db)] == [
        "m001_runs_and_experiments",
        "m002_run_metric_and_experiment_tree",
        "m003_measured_usage",
        "m003_decisions_curves_throughput_drift",
        "m_views_agents_and_invocations",
        "m004_slots_pending_per_experiment",
    ]
    assert {"metric", "direction"} <= set(db["runs"].columns_dict) and "tree" in columns
    assert {"measure_cpu_seconds", "measure_peak_mb"} <= set(db["experiments"].columns_dict)
    assert {"curves", "throughput"} <= set(columns) and "drift" in db["runs"].columns_dict


def test_foreign_and_corrupt_files_are_refused_and_kept(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(LedgerError, match="not an SQLite database"):
        History(junk)
    assert junk.read_bytes().startswith(b"not a database")
    other = tmp_path / "other.db"
    sqlite_utils.Database(other)["people"].insert({"name": "x"})
    with pytest.raises(LedgerError, match="not an autoresearch ledger"):
        History(other)
    assert sqlite_utils.Database(other)["people"].count == 1


def test_export_tsv_matches_original_layout():
    rows = [
        {
            "commit": "a1b2c3d4e5",
            "metric": 0.9979,
            "extras": {"peak_vram_mb": 45060.2},
            "status": "baseline",
            "description": "baseline",
        },
        {"commit": None, "metric": None, "extras": {}, "status": "crash", "description": "double\twidth"},
    ]
    assert export_tsv(rows, "val_bpb").splitlines() == [
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
        "a1b2c3d\t0.997900\t44.0\tbaseline\tbaseline",
        "\t0.000000\t0.0\tcrash\tdouble width",
    ]


def test_readers_show_best_sql_export_brief(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "5", "--tag", "t")
    best = json.loads(invoke("best", "--json").output)
    assert best["status"] in ("baseline", "keep")
    shown = invoke("show", "1").output
    assert "experiment 1 of run t" in shown and "diff --git a/model.py" in shown and "log tail" in shown
    assert invoke("show", "99").exit_code == 1
    out = invoke("sql", "select count(*) as n from experiments", "--json").output
    assert json.loads(out) == [{"n": 6}]
    refused = invoke("sql", "delete from experiments")
    assert refused.exit_code == 1 and "readonly" in refused.output
    tsv = invoke("export", "--format", "tsv").output.splitlines()
    assert tsv[0] == "commit\tloss\tmemory_gb\tstatus\tdescription" and len(tsv) == 7
    brief = invoke("brief").output
    assert "## Recent experiments" in brief and "model.py" in brief and "X = " in brief


def test_readers_are_not_blocked_by_a_running_loop(toy):
    env_sleep = {"TOY_SLEEP": "1.5"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoresearch.cli",
            "run",
            "--agent",
            "mutate",
            "--max-experiments",
            "3",
            "--tag",
            "t",
        ],
        cwd=toy,
        env={**__import__("os").environ, **env_sleep},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    db = toy / ".autoresearch" / "history.db"
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (db.exists() and History(db).experiments("t")):
            time.sleep(0.1)
        # A writer in the middle of a transaction: WAL lets a reader through at once; a rollback
        # journal would make it wait the busy timeout (30 s) and fail with "database is locked".
        writer = sqlite3.connect(db, isolation_level=None, timeout=60)
        writer.execute("begin exclusive")
        writer.execute("update runs set noise = noise")
        try:
            result = invoke("log", "--json")
        finally:
            writer.execute("rollback")
            writer.close()
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)[0]["status"] == "baseline"
        assert sqlite3.connect(db).execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0


def test_check_measures_without_git_or_ledger(toy):
    from conftest import git

    head = git(toy, "rev-parse", "HEAD")
    result = invoke("check")
    assert result.exit_code == 0, result.output
    assert (
        "status: ok" in result.output and "loss: 1.99" in result.output and "memory_gb: 0.5" in result.output
    )
    assert git(toy, "rev-parse", "HEAD") == head
    assert not (toy / ".autoresearch" / "history.db").exists()


def test_ledger_opens_with_the_sqlite_utils_cli(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "2", "--tag", "t")
    exe = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent)) or shutil.which("sqlite-utils")
    db = str(toy / ".autoresearch" / "history.db")
    tables = subprocess.run([exe, "tables", db], capture_output=True, text=True, check=True).stdout
    assert "experiments" in tables and "runs" in tables
    out = subprocess.run(
        [exe, "rows", db, "experiments", "-c", "number", "-c", "status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)[0] == {"number": 0, "status": "baseline"}


FIXTURES = Path(__file__).parent / "fixtures"


def main_ledger(path: Path) -> Path:
    """A ledger as the release before these migrations wrote it (tests/fixtures/ledger_m001.sql)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "ledger_m001.sql").read_text())
    conn.close()
    return path


def test_a_ledger_written_by_the_current_release_is_migrated(tmp_path):
    history = History(main_ledger(tmp_path / "history.db"))
    assert [m.name for m in migrations.applied(history.db)] == [
        "m001_runs_and_experiments",
        "m002_run_metric_and_experiment_tree",
        "m003_measured_usage",
        "m003_decisions_curves_throughput_drift",
        "m_views_agents_and_invocations",
        "m004_slots_pending_per_experiment",
    ]
    assert history.invocations("nov30") == [] and history.experiments("nov30")[1]["agent"] is None
    run = history.run("nov30")
    assert (run["noise"], run["metric"], run["direction"]) == (0.0021, None, None)
    rows = history.experiments("nov30")
    assert [(r["number"], r["status"], r["tree"]) for r in rows] == [
        (0, "baseline", None),
        (1, "discard", None),
    ]
    assert [r["log_path"] for r in rows] == [f".autoresearch/logs/nov30/{n}.log" for n in (0, 1)]  # relative
    assert history.pending("nov30") == Pending(2, "measure", "a" * 40, "c" * 40, pgid=4242)
    assert history.descriptions("nov30") == ["X 3.0 -> 4.0"]
    history.record({"run": "nov30", "number": 2, "status": "crash", "parent_commit": "a", "tree": "e" * 40})
    assert history.pending("nov30") is None and history.measured_tree("nov30", "e" * 40) == 2


def test_a_ledger_from_a_newer_release_is_refused_before_anything_is_done(toy):
    from conftest import git

    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t")
    db = toy / ".autoresearch" / "history.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "insert into _sqlite_migrations (migration_set, name, applied_at) "
        "values ('autoresearch', 'm999_from_the_future', '2027-01-01')"
    )
    conn.execute("alter table experiments rename column metric to value")  # what that release did
    conn.commit()
    conn.close()
    refs = git(toy, "for-each-ref")
    for args in (["run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t"], ["log"]):
        result = invoke(*args)
        assert result.exit_code == 1
        newer = "was written by a newer autoresearch (migration m999_from_the_future); upgrade autoresearch"
        assert result.output.strip().endswith(newer + " to use it")
    assert git(toy, "for-each-ref") == refs
    assert sqlite3.connect(db).execute("select count(*) from experiments").fetchone()[0] == 2


def read_only_folder_prefix(folder: Path) -> list[str]:
    """A command prefix that runs with ``folder`` on a read-only mount (root ignores chmod)."""
    remount = f'mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && exec "$@"'
    prefix = ["unshare", "--mount", "--map-root-user", "sh", "-c", remount, "sh"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("this system refuses user mount namespaces (unshare), so nothing is read-only to root")
    return prefix


def test_a_read_only_ledger_is_reported_as_not_writable_not_as_damaged(toy):
    invoke("run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t")
    state = toy / ".autoresearch"
    prefix = read_only_folder_prefix(state)
    for args in (["log"], ["run", "--agent", "mutate", "--max-experiments", "1", "--tag", "t"]):
        command = [*prefix, sys.executable, "-m", "autoresearch.cli", *args]
        result = subprocess.run(command, cwd=toy, capture_output=True, text=True)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.strip() == (
            f"Error: {state / 'history.db'} cannot be written (read-only file or folder); "
            f"make {state} writable and run again"
        )
    assert len(History(state / "history.db").experiments("t")) == 2


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_ledger_deleted_or_replaced_during_a_run_stops_it(toy, scripted, how):
    from autoresearch import Proposal

    from conftest import MODEL, git

    db = toy / ".autoresearch" / "history.db"

    def lose_the_ledger(brief):
        if how == "deleted":
            db.unlink()
        else:  # e.g. restored from a backup: the same name, another file
            shutil.copy(db, db.with_name("copy.db"))
            db.with_name("copy.db").replace(db)
        (brief.root / "model.py").write_text(MODEL.replace("Y = 10", "Y = 8"))
        return Proposal("Y 10 -> 8")

    scripted += [lose_the_ledger, {"model.py": MODEL.replace("Y = 10", "Y = 9")}]
    result = invoke("run", "--agent", "scripted", "--max-experiments", "2", "--tag", "t")
    assert result.exit_code == 1, result.output
    assert f"stopped: {db} was deleted or replaced while the run was going" in result.output
    assert git(toy, "status", "--porcelain", "--untracked-files=no") == ""
    assert len(scripted) == 1  # no experiment after it


def test_processes_opening_a_new_ledger_at_once_all_succeed(tmp_path):
    """``run`` and ``log`` started together on a new workspace: one migrates, the others wait."""
    go = tmp_path / "go"
    opener = (
        "import os, sys\n"
        "from autoresearch.history import History\n"
        "while not os.path.exists(sys.argv[1]): pass  # spin, so all open at the same moment\n"
        "History(sys.argv[2]).close()\n"
    )
    db = tmp_path / "new" / "history.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", opener, str(go), str(db)], stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    time.sleep(1)  # all of them waiting for the go
    go.write_text("")
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, errors
    assert [m.name for m in migrations.applied(History(db).db)][0] == "m001_runs_and_experiments"


def test_the_statuses_are_defined_once_offered_by_log_and_documented():
    from autoresearch import statuses
    from autoresearch.cli import log

    option = next(param for param in log.params if param.name == "status")
    assert tuple(option.type.choices) == statuses.ALL
    groups = (statuses.INCUMBENT, statuses.DECIDED, statuses.MEASUREMENT_FAILURES, statuses.SHOWN_FAILURES)
    assert all(set(group) < set(statuses.ALL) for group in groups)
    guide = (Path(__file__).parent.parent / "docs" / "guide.md").read_text()
    section = guide.split("## Statuses\n", 1)[1].split("\n## ", 1)[0]
    assert [status for status in statuses.ALL if f"`{status}`" not in section] == []
