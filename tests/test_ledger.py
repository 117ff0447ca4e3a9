"""The SQLite ledger and the commands that read it."""

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils

from autoresearch.history import History, LedgerError, export_tsv, migrations

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
    assert [m.name for m in migrations.applied(db)][:1] == ["m001_runs_and_experiments"]
    assert {"curves", "throughput"} <= set(db["experiments"].columns_dict)
    assert "drift" in db["runs"].columns_dict


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
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not (toy / ".autoresearch" / "history.db").exists():
            time.sleep(0.1)
        time.sleep(2)
        started = time.monotonic()
        result = invoke("log", "--json")
        assert result.exit_code == 0
        assert time.monotonic() - started < 2
        conn = sqlite3.connect(toy / ".autoresearch" / "history.db")
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        proc.wait(timeout=60)
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
    import shutil

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
