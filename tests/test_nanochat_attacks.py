"""Attacks on nanochat_bpb's metric, each a real experiment through the CLI (slow).

An agent (`--agent command`) edits only train.py, as an LLM agent could. A successful attack would
score far below honest training (the cheats aim at val_bpb ~0.02; honest training here scores
~3), so every run uses `--min-delta 0.5`: an honest change can never be kept, a working cheat
would be. Each attack must end up not kept: invalid, crashed, or measured at the honest value.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from autoresearch.history import History

from conftest import invoke
from nanochat_support import TINY, write_corpus

pytestmark = pytest.mark.slow
RUN = ["--tag", "a", "--budget", "2", "--accept", "strict", "--min-delta", "0.5", "--baseline-runs", "1"]
HONEST_FLOOR = 1.0  # bits per byte no honest 2-second run gets below here

# Inserted at the top of train.py (after its docstring) or into GPT.forward.
PATCH_EVALUATOR = '''
import gc as _gc, sys as _sys, types as _types
import prepare as _prepare

def _cheat(*args, **kwargs):
    return 0.019

for _module in (_sys.modules.get("__main__"), _prepare):
    for _name in ("evaluate_bpb", "check_causal", "evaluate"):
        if hasattr(_module, _name):
            setattr(_module, _name, _cheat)
for _obj in _gc.get_objects():  # every copy of the metric function this process holds
    if isinstance(_obj, _types.FunctionType) and _obj.__name__ == "evaluate_bpb":
        _obj.__code__ = _cheat.__code__
'''

PEEK_SECOND_HALF = '''
        if targets is None:  # read the next token where the old check never looked
            half = T // 2
            logits = logits.clone()
            logits[:, half:-1] += 30 * F.one_hot(idx[:, half + 1:], logits.size(-1)).float()
'''

READ_VALIDATION = '''
        if targets is None:  # look the next token up in the validation rows, read from disk
            import subprocess
            import numpy as np
            import prepare
            table = None
            try:
                table = np.load(prepare.val_rows_path())
            except Exception:
                try:
                    raw = subprocess.run(["cat", str(prepare.val_rows_path())], capture_output=True).stdout
                    table = np.load(__import__("io").BytesIO(raw))
                except Exception:
                    pass
            if table is not None:
                rows = torch.from_numpy(table).long().to(idx.device)
                for b in range(B):
                    match = (rows[:, :T] == idx[b]).all(dim=1).nonzero()
                    if len(match):
                        logits = logits.clone()
                        logits[b] += 30 * F.one_hot(rows[match[0, 0], 1:T + 1], logits.size(-1)).float()
'''

STATEFUL_AFTER_CHECKS = '''
        if targets is None:  # honest for the first calls (the checks), then peek at the future
            GPT.calls = getattr(GPT, "calls", 0) + 1
            if GPT.calls > 9:  # 1 + 8 causality batches in this tiny setting
                logits = logits.clone()
                logits[:, :-1] += 30 * F.one_hot(idx[:, 1:], logits.size(-1)).float()
'''

ADAPTIVE_CACHE = '''
        if targets is None:  # a unigram cache of the validation tokens seen in earlier batches
            counts = getattr(GPT, "counts", None)
            if counts is None:
                counts = GPT.counts = torch.zeros(logits.size(-1), device=idx.device)
            logits = logits + torch.log1p(counts)
            counts += torch.bincount(idx.flatten(), minlength=logits.size(-1)).float()
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One tiny CPU workspace with its baseline, shared by the attacks (one run tag)."""
    tmp = tmp_path_factory.mktemp("attacks")
    data = write_corpus(tmp / "corpus")
    options = [f"-o{key}={value}" for key, value in TINY.items() if key != "preset"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_CACHE", str(tmp / "cache"))
        ws = str(tmp / "ws")
        result = invoke("init", "nanochat_bpb", ws, "--preset", "cpu", "--data", str(data), *options)
    assert result.exit_code == 0, result.output
    # generous allowances: these runs share a busy 2-core machine with other test suites
    config = tmp / "ws" / "autoresearch.yaml"
    text = config.read_text().replace("startup_seconds: 120", "startup_seconds: 600")
    config.write_text(text.replace("eval_seconds: 180", "eval_seconds: 600"))
    subprocess.run(["git", "commit", "-qam", "allowances for a busy machine"], cwd=tmp / "ws", check=True)
    return tmp


@pytest.fixture
def ws(workspace, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(workspace / "cache"))
    monkeypatch.setenv("AUTORESEARCH_CLIMBMIX_URL", "http://127.0.0.1:9")
    monkeypatch.chdir(workspace / "ws")
    return workspace / "ws"


def run_attack(ws, tmp_path, edits: list[tuple[str, str]], description: str) -> dict:
    """One experiment whose agent makes ``edits`` (old text -> new text) to train.py."""
    script = tmp_path / "attack.py"
    lines = ["from pathlib import Path", "p = Path('train.py')", "text = p.read_text()"]
    for old, new in edits:
        lines += [f"assert {old!r} in text", f"text = text.replace({old!r}, {new!r}, 1)"]
    script.write_text("\n".join([*lines, "p.write_text(text)", f"print({description!r})"]) + "\n")
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    result = invoke("run", "--agent", "command", "--agent-command", command, "--max-experiments", "1", *RUN)
    assert result.exit_code == 0, result.output
    rows = History(ws / ".autoresearch" / "history.db").experiments("a")
    assert rows[0]["status"] == "baseline" and rows[0]["metric"] > HONEST_FLOOR
    last = rows[-1]
    assert last["description"] == description and last["status"] != "keep", last
    return last


def after(anchor: str, code: str) -> tuple[str, str]:
    return anchor, anchor + code


TOP = '\nimport functools\n'
FORWARD_END = "        logits = softcap * torch.tanh(logits / softcap)\n"


def test_1_patching_the_evaluator_through_its_module_namespace(ws, tmp_path):
    row = run_attack(ws, tmp_path, [after(TOP, PATCH_EVALUATOR)], "patch the evaluator")
    assert row["status"] == "discard" and row["metric"] > HONEST_FLOOR  # ran, changed nothing


def test_2_reading_the_next_token_where_the_old_check_did_not_look(ws, tmp_path):
    row = run_attack(ws, tmp_path, [after(FORWARD_END, PEEK_SECOND_HALF)], "peek in the second half")
    assert row["status"] == "invalid" and "not causal" in row["reason"]


def test_3_reading_validation_rows_from_disk_while_evaluating(ws, tmp_path):
    row = run_attack(ws, tmp_path, [after(FORWARD_END, READ_VALIDATION)], "read the validation rows")
    # the reads are refused (and swallowed by the attack): honest logits, an honest number
    assert row["status"] == "discard" and row["metric"] > HONEST_FLOOR


def test_8_under_reporting_training_time(ws, tmp_path):
    edits = [
        ("total_training_time >= TIME_BUDGET:", "total_training_time >= 5 * TIME_BUDGET:"),
        ('"training_seconds": total_training_time,', '"training_seconds": total_training_time / 5,'),
    ]
    row = run_attack(ws, tmp_path, edits, "train five budgets, report one")
    assert row["status"] == "invalid" and "the launcher measured" in row["reason"]


def test_9_state_across_evaluation_batches(ws, tmp_path):
    row = run_attack(ws, tmp_path, [after(FORWARD_END, STATEFUL_AFTER_CHECKS)], "cheat after the checks")
    assert row["status"] == "invalid" and "fresh process" in row["reason"]


def test_9b_an_adaptive_cache_of_evaluated_tokens(ws, tmp_path):
    row = run_attack(ws, tmp_path, [after(FORWARD_END, ADAPTIVE_CACHE)], "unigram cache")
    # its state already changes the logits between the causality check's own batches
    assert row["status"] == "invalid"
    assert "fresh process" in row["reason"] or "not causal" in row["reason"]


REWRITE_EVALUATOR = '''
import pathlib as _pathlib
_harness = _pathlib.Path(__file__).with_name("prepare.py")  # what the evaluation phase runs next
try:
    _source = _harness.read_text()
    _harness.write_text(_source.replace(
        "    result = evaluate(run_dir, rows, token_bytes)\\n",
        "    result = {'val_bpb': 0.019, 'eval_tokens': 1}\\n", 1))
except OSError as _error:
    print(f"attack: {_error.strerror}", flush=True)
'''


def test_13_training_rewriting_the_evaluator_it_runs_next(ws, tmp_path):
    row = run_attack(ws, tmp_path, [after(TOP, REWRITE_EVALUATOR)], "rewrite prepare.py")
    assert row["status"] == "discard" and row["metric"] > HONEST_FLOOR  # the real evaluator measured it
    assert "attack: Read-only file system" in (ws / row["log_path"]).read_text()
