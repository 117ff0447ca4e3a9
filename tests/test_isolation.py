"""The attack suite (issue 10) for the defences of the measurement seam, and the user's checkout.

Each attack is a real run through the CLI: the ``command`` agent runs a script that writes the
attack into the editable ``model.py``; its honest part scores worse than the baseline, so only a
working attack could get it (or a later honest-but-worse change) kept. None may be kept.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from autoresearch import hookimpl
from autoresearch.history import History
from autoresearch.plugins.command import CommandTarget
from autoresearch.sandbox import bwrap_problem

from conftest import MODEL, git, invoke, make_repo, plugin_registered, waiting_workspace

pytestmark = pytest.mark.skipif(bwrap_problem() is not None, reason="needs bubblewrap")

# statistics is imported before the agent's code: a module shadowing it can only skew a later run.
EVALUATE = """\
import os, statistics, time
import model
print("evaluating", flush=True)
while os.path.exists(os.path.join(os.environ["TEST_WORKSPACE"], ".slow")):
    time.sleep(0.05)
cache = os.environ.get("ATTACK_CACHE")  # the cached_toy target's: a scale in its data cache
scale = float(open(os.path.join(cache, "scale.txt")).read()) if cache else 1.0
print("---")
print(f"loss: {statistics.fmean([model.score()]) * scale:.6f}")
"""
WORSE = MODEL.replace("X = 3.0", "X = 3.5")  # honest loss 3.54 against the baseline's 1.99
WORSE_STILL = MODEL.replace("X = 3.0", "X = 3.6")

AGENT = """\
import json, sys
from pathlib import Path
steps = json.loads(Path({steps!r}).read_text())
counter = Path({counter!r})
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
Path({path!r}).write_text(steps[min(n, len(steps) - 1)])
"""


@pytest.fixture
def ws(tmp_path, monkeypatch):
    return waiting_workspace(tmp_path, monkeypatch, EVALUATE)


def agent_args(tmp_path: Path, steps: list[str], path: str = "model.py") -> list[str]:
    """``--agent command`` running a script that writes ``steps[n]`` into ``path`` at experiment n."""
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    script = tmp_path / "attacker.py"
    script.write_text(
        AGENT.format(steps=str(tmp_path / "steps.json"), counter=str(tmp_path / "n"), path=path)
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    return ["--agent", "command", "--agent-command", command, "--max-experiments", str(len(steps))]


def attack(tmp_path: Path, steps: list[str], *extra: str) -> list[dict]:
    result = invoke("run", *agent_args(tmp_path, steps), "--tag", "t", "--accept", "strict", *extra)
    assert result.exit_code == 0, result.output
    rows = History(Path.cwd() / ".autoresearch" / "history.db").experiments("t")
    assert len(rows) == len(steps) + 1, result.output
    assert not [r for r in rows if r["status"] == "keep"], [(r["status"], r["metric"]) for r in rows]
    return rows


def payload(code: str, model: str = WORSE) -> str:
    return model + "\n\n" + textwrap.dedent(code)


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_4_untracked_shadowing_module_does_not_outlive_its_measurement(ws, tmp_path):
    shadow = payload(
        """
        import os
        for folder in (os.getcwd(), os.environ["TEST_WORKSPACE"]):
            try:
                with open(os.path.join(folder, "statistics.py"), "w") as f:
                    f.write("def fmean(xs):\\n    return 0.0\\n")
            except OSError:
                pass
        """
    )
    rows = attack(tmp_path, [shadow, WORSE_STILL])
    assert rows[2]["metric"] == pytest.approx(3.91)  # measured honestly: the shadow is gone
    assert not (ws / "statistics.py").exists()


def test_6_a_pth_file_in_the_python_environment_cannot_be_written(ws, tmp_path):
    pth = Path(sysconfig.get_paths()["purelib"]) / "autoresearch_attack.pth"
    startup = payload(
        f"""
        try:
            with open({str(pth)!r}, "w") as f:
                f.write("import statistics; statistics.fmean = lambda xs: 0.0\\n")
        except OSError:
            pass
        """
    )
    try:
        rows = attack(tmp_path, [startup, WORSE_STILL])
        assert not pth.exists()
        assert rows[2]["metric"] == pytest.approx(3.91)
    finally:
        pth.unlink(missing_ok=True)


def test_10_a_detached_process_dies_with_its_measurement(ws, tmp_path):
    marker = f"detached-{tmp_path.name}"
    daemon = payload(
        f"""
        import subprocess, sys
        subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(300)", {marker!r}],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        """
    )
    attack(tmp_path, [daemon])
    assert not marked_processes(marker), "a process of the measurement outlived it"


def test_12_kill_9_of_the_harness_leaves_no_process_behind(ws, tmp_path):
    """Through /bin/sh (which forks, not execs, before a second command) and a setsid daemon."""
    marker = f"survivor-{tmp_path.name}"
    config = ws / "autoresearch.yaml"
    config.write_text(
        config.read_text().replace(f"{sys.executable} evaluate.py", f"{sys.executable} evaluate.py; true")
    )
    git(ws, "commit", "-qam", "evaluate through a shell that forks")
    daemon = payload(
        f"""
        import subprocess, sys
        subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(300)", {marker!r}],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        """
    )
    assert invoke("run", "--tag", "t", "--accept", "strict", "--max-experiments", "0").exit_code == 0
    (ws / ".slow").write_text("")  # the attack's measurement waits, so that the harness dies mid-way
    harness = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "run", "--tag", "t", "--accept", "strict"]
        + agent_args(tmp_path, [daemon]),
        cwd=ws,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while not marked_processes(marker):
            assert time.time() < deadline and harness.poll() is None, "the attack never started"
            time.sleep(0.1)
        checkouts = str(ws / ".autoresearch" / "checkouts")  # this test's: other runs may be going
        evaluators = [p for p in psutil.process_iter(["cwd"]) if checkouts in (p.info["cwd"] or "")]
        assert evaluators
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        gone = time.time() + 10
        while time.time() < gone and (marked_processes(marker) or any(p.is_running() for p in evaluators)):
            time.sleep(0.1)
        assert not marked_processes(marker), "the setsid daemon survived kill -9 of the harness"
        assert not [p for p in evaluators if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        for proc in marked_processes(marker):
            proc.kill()
        (ws / ".slow").unlink(missing_ok=True)


# ---- targets that declare secrets and cache files


class SecretToy(CommandTarget):
    """The toy, whose evaluator must not see ATTACK_SECRET (a folder holding the answer)."""

    name = "secret_toy"

    def secret_paths(self) -> list[Path]:
        return [Path(os.environ["ATTACK_SECRET"])]


class CachedToy(CommandTarget):
    """The toy, whose metric is scaled by a number in a prepared cache file."""

    name = "cached_toy"

    def cache_files(self) -> list[Path]:
        return [Path(os.environ["ATTACK_CACHE"]) / "scale.txt"]

    def prepare(self, root, echo=print) -> None:
        scale = self.cache_files()[0]
        if not scale.exists():
            scale.parent.mkdir(parents=True, exist_ok=True)
            scale.write_text("1\n")
            echo("prepared scale.txt")


class ToyTargets:
    @hookimpl
    def register_targets(self, register):
        register(SecretToy)
        register(CachedToy)


@pytest.fixture
def toy_targets():
    with plugin_registered(ToyTargets(), "toy-targets"):
        yield


def retarget(ws: Path, name: str) -> None:
    config = ws / "autoresearch.yaml"
    config.write_text(config.read_text().replace("target: command", f"target: {name}"))
    git(ws, "commit", "-qam", f"target {name}")


def test_7_a_child_process_cannot_read_the_secret_split(ws, tmp_path, toy_targets, monkeypatch):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "answer.txt").write_text("0.0\n")
    monkeypatch.setenv("ATTACK_SECRET", str(secret))
    retarget(ws, "secret_toy")
    reader = payload(
        f"""
        import subprocess
        _seen = subprocess.run(["cat", {str(secret / "answer.txt")!r}], capture_output=True, text=True).stdout
        if _seen.strip():
            score = lambda: float(_seen)
        """
    )
    rows = attack(tmp_path, [reader])
    assert rows[1]["metric"] == pytest.approx(3.54)
    assert (secret / "answer.txt").read_text() == "0.0\n"  # hidden, not harmed


def test_5_the_cache_is_read_only_and_a_changed_cache_stops_the_run(ws, tmp_path, toy_targets, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTACK_CACHE", str(cache))
    retarget(ws, "cached_toy")
    rewrite = payload(
        f"""
        try:
            with open({str(cache / "scale.txt")!r}, "w") as f:
                f.write("0\\n")
        except OSError:
            pass
        """
    )
    rows = attack(tmp_path, [rewrite, WORSE_STILL])
    assert (cache / "scale.txt").read_text() == "1\n"
    assert rows[2]["metric"] == pytest.approx(3.91)

    # Rewritten from outside (where no sandbox runs): the next run stops before measuring.
    (cache / "scale.txt").write_text("0\n")
    (tmp_path / "n").unlink()
    stopped = invoke("run", *agent_args(tmp_path, [WORSE]), "--tag", "t", "--accept", "strict")
    assert stopped.exit_code == 1
    assert "the data cache changed since it was prepared" in stopped.output
    assert "autoresearch prepare" in stopped.output
    assert len(History(ws / ".autoresearch" / "history.db").experiments("t")) == 3
    prepared = invoke("prepare")
    assert prepared.exit_code == 0 and "rebuilding" in prepared.output
    assert (cache / "scale.txt").read_text() == "1\n"
    resumed = invoke("run", *agent_args(tmp_path, [WORSE]), "--tag", "t", "--accept", "strict")
    assert resumed.exit_code == 0, resumed.output


CLOCKS = ("process_time", "perf_counter", "monotonic", "time")


def scaled_clocks(factor: float) -> str:
    """Every clock of ``time`` (and its _ns twin) replaced by one that runs ``factor`` as fast."""
    lines = ["import time as _time"]
    for name in CLOCKS:
        lines += [
            f"_real_{name}, _real_{name}_ns = _time.{name}, _time.{name}_ns",
            f"_time.{name} = lambda: _real_{name}() * {factor}",
            f"_time.{name}_ns = lambda: int(_real_{name}_ns() * {factor})",
        ]
    return "\n".join(lines) + "\n"


PRECOMPUTED = """
_multiply, _answers = multiply, {}
import random as _random
_rng = _random.Random(0)  # the old benchmark's one fixed input, multiplied ahead
_p, _q = [_rng.randint(-1000, 1000) for _ in range(300)], [_rng.randint(-1000, 1000) for _ in range(300)]
_answers[(tuple(_p), tuple(_q))] = _multiply(_p, _q)


def multiply(p, q):  # work done before the timed section, and remembered between runs
    key = (tuple(p), tuple(q))
    if key not in _answers:
        _answers[key] = _multiply(p, q)
    return list(_answers[key])
"""

IN_A_THREAD = """
import threading as _threading
_multiply = multiply


def multiply(p, q):  # the work in another thread (recursive calls: in that thread)
    if _threading.current_thread() is not _threading.main_thread():
        return _multiply(p, q)
    out = []
    thread = _threading.Thread(target=lambda: out.append(_multiply(p, q)))
    thread.start()
    thread.join()
    return out[0]
"""

IN_A_CHILD = """
import json as _json, subprocess as _subprocess, sys as _sys
_helper, _slower = None, multiply


def multiply(p, q):  # the work in a helper process started once, outside the timed runs
    global _helper
    if _helper is None:
        code = ("import json, sys\\nsys.path.insert(0, '.')\\nimport multiply as m\\nm.multiply = m._exact\\n"
                "for line in sys.stdin:\\n    print(json.dumps(m._slower(*json.loads(line))), flush=True)")
        _helper = _subprocess.Popen([_sys.executable, "-c", code], stdin=_subprocess.PIPE,
                                    stdout=_subprocess.PIPE, text=True)
    _helper.stdin.write(_json.dumps([p, q]) + "\\n")
    _helper.stdin.flush()
    return _json.loads(_helper.stdout.readline())
"""


SLOWER = """
_exact = multiply


def multiply(p, q):  # about 1.5x slower on the benchmark's size (not in the recursion): the honest
    if len(p) >= 300:  # part, far enough above a busy machine's noise of one measurement (~20%)
        _exact(p[:200], q[:200])
    return _exact(p, q)
"""


def test_11_no_change_to_the_code_under_test_makes_it_look_faster(tmp_path, monkeypatch):
    """The benchmark times multiply() from outside its process: replaced clocks (slowed by
    less or more), work done ahead or remembered, or moved to a thread or a child process,
    are all measured at their true cost."""
    workspace = tmp_path / "perf"
    assert invoke("init", "perf_example", str(workspace)).exit_code == 0
    monkeypatch.chdir(workspace)
    honest = (workspace / "multiply.py").read_text() + SLOWER  # only a working cheat could be kept
    cheats = {
        # a working cheat would show 0.6 x 1.5 or less of the baseline, and be kept
        "clocks x0.6": honest + scaled_clocks(0.6),
        "clocks x0.5": honest + scaled_clocks(0.5),
        "clocks x0.1": honest + scaled_clocks(0.1),
        "precomputed": honest + PRECOMPUTED,
        "in a thread": honest + IN_A_THREAD,
        "in a child": honest + IN_A_CHILD,
    }
    agent = agent_args(tmp_path, list(cheats.values()), "multiply.py")
    # three baseline samples: one slow one on a busy machine would flatter every cheat
    result = invoke("run", *agent, "--tag", "t", "--accept", "strict", "--baseline-runs", "3")
    assert result.exit_code == 0, result.output
    baseline, *rows = History(workspace / ".autoresearch" / "history.db").experiments("t")
    measured = {n: (row["status"], row["metric"], row["reason"]) for n, row in zip(cheats, rows, strict=True)}
    for name, (status, metric, _) in measured.items():
        assert status == "discard", (baseline["metric"], measured)  # measured, and at its true cost
        assert metric > baseline["metric"], (name, baseline["metric"], measured)


# ---- 13: a training step that rewrites what the scoring step runs (the checkout is read-only)

TRAIN = MODEL + """

if __name__ == "__main__":  # "training": the scoring step reads what it leaves in $TMPDIR
    import os
    with open(os.path.join(os.environ["TMPDIR"], "answer.txt"), "w") as f:
        f.write(f"{score()}")
"""
SCORE = """\
import os, statistics
answer = float(open(os.path.join(os.environ["TMPDIR"], "answer.txt")).read())
print("---")
print(f"loss: {statistics.fmean([answer]):.6f}")
"""


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    """A command workspace whose run trains (model.py, editable) then scores (score.py, protected)
    in a second process that never imports the agent's code."""
    root = make_repo(tmp_path / "ws", {"model.py": TRAIN, "score.py": SCORE})
    python = shlex.quote(sys.executable)
    init = invoke(
        "init", "command", "--edit", "model.py", "--protect", "score.py", "--metric", "loss",
        "--run", f"{python} model.py && {python} score.py", "--budget", "60", str(root),
    )  # fmt: skip
    assert init.exit_code == 0, init.output
    monkeypatch.chdir(root)
    return root


WRITES = {  # what the training step writes into the checkout, to change what the scoring step runs
    "rewrite": ("score.py", "print('---')\nprint('loss: 0.0')\n"),
    "shadow": ("statistics.py", "def fmean(xs):\n    return 0.0\n"),  # a module score.py imports
}


@pytest.mark.parametrize("kind", WRITES)
def test_13_training_cannot_change_what_the_scoring_step_runs(pipeline, tmp_path, kind):
    path, text = WRITES[kind]
    write = f"""
if __name__ == "__main__":  # while training
    try:
        with open({path!r}, "w") as f:
            f.write({text!r})
    except OSError as error:
        print(f"attack: {{error.strerror}}")
"""
    rows = attack(tmp_path, [TRAIN.replace("X = 3.0", "X = 3.5") + write])
    assert rows[1]["metric"] == pytest.approx(3.54)  # scored by the real score.py, untouched
    assert "attack: Read-only file system" in (pipeline / rows[1]["log_path"]).read_text()


# ---- the user's checkout during a run


def start(ws: Path, tmp_path: Path, steps: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "run", "--tag", "t", "--accept", "strict"]
        + agent_args(tmp_path, steps),
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def evaluations(ws: Path) -> int:
    return sum(log.read_text().count("evaluating\n") for log in (ws / ".autoresearch/logs/t").glob("*.log"))


def start_measuring(ws: Path, tmp_path: Path, steps: list[str]) -> subprocess.Popen:
    """A run (its baseline already measured) whose experiment 1 is being measured, and waits."""
    assert invoke("run", "--tag", "t", "--accept", "strict", "--max-experiments", "0").exit_code == 0
    before = evaluations(ws)
    (ws / ".slow").write_text("")
    proc = start(ws, tmp_path, steps)
    deadline = time.time() + 60
    while evaluations(ws) == before:
        assert time.time() < deadline and proc.poll() is None, "the measurement never started"
        time.sleep(0.05)
    return proc


def test_checking_out_another_branch_during_a_measurement_loses_nothing(ws, tmp_path):
    better = MODEL.replace("X = 3.0", "X = 2.0")
    proc = start_measuring(ws, tmp_path, [better])
    try:
        git(ws, "checkout", "-q", "-b", "mine")
        (ws / "notes.md").write_text("my own work\n")
        git(ws, "add", "notes.md")
        git(ws, "commit", "-qm", "my own work")
        (ws / "model.py").write_text(MODEL + "# uncommitted, mine\n")
    finally:
        (ws / ".slow").unlink()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    rows = History(ws / ".autoresearch" / "history.db").experiments("t")
    assert [r["status"] for r in rows] == ["baseline", "keep"]
    assert git(ws, "rev-parse", "autoresearch/t") == rows[1]["commit"]
    assert git(ws, "rev-parse", "--abbrev-ref", "HEAD") == "mine"
    assert git(ws, "log", "-1", "--format=%s") == "my own work"
    assert (ws / "model.py").read_text() == MODEL + "# uncommitted, mine\n"


def test_a_run_refuses_to_start_while_the_user_is_on_its_branch(ws):
    assert invoke("run", "--tag", "t", "--accept", "strict", "--max-experiments", "0").exit_code == 0
    git(ws, "checkout", "-q", "autoresearch/t")
    result = invoke("run", "--tag", "t", "--accept", "strict", "--max-experiments", "1")
    assert result.exit_code == 1
    assert "your checkout is on autoresearch/t, which the run moves" in result.output


def test_a_commit_on_the_run_branch_during_a_measurement_stops_the_run_and_stays(ws, tmp_path):
    better = MODEL.replace("X = 3.0", "X = 2.0")
    proc = start_measuring(ws, tmp_path, [better])
    try:
        git(ws, "checkout", "-q", "autoresearch/t")
        (ws / "notes.md").write_text("committed on the run branch\n")
        git(ws, "add", "notes.md")
        git(ws, "commit", "-qm", "a commit of mine on the run branch")
        mine = git(ws, "rev-parse", "HEAD")
    finally:
        (ws / ".slow").unlink()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f"branch autoresearch/t is at {mine[:12]}" in out and "Nothing was rewritten" in out
    assert git(ws, "rev-parse", "autoresearch/t") == mine
    assert git(ws, "status", "--porcelain") == ""
    history = History(ws / ".autoresearch" / "history.db")
    pending = history.pending("t")
    assert pending.phase == "decided" and pending.keep  # the kept experiment waits, nothing is lost
    # The user moves the branch back, as the line says: the next run records the kept experiment.
    git(ws, "checkout", "-q", "main")
    git(ws, "branch", "-f", "autoresearch/t", pending.parent)
    assert invoke("run", "--tag", "t", "--accept", "strict", "--max-experiments", "0").exit_code == 0
    assert history.experiments("t")[-1]["status"] == "keep"
    assert git(ws, "rev-parse", "autoresearch/t") == pending.commit


# ---- nanochat_bpb: the validation split through a child process of training


NANOCHAT_ATTACK = """\
from pathlib import Path
train = Path("train.py")
source = train.read_text().replace(
    "    tokenizer = Tokenizer.load()",
    "    import subprocess, prepare\\n"
    "    rows = subprocess.run(['cat', str(prepare.val_rows_path())], capture_output=True).stdout\\n"
    "    print(f'attack: read {len(rows)} bytes of validation rows', flush=True)\\n"
    "    tokenizer = Tokenizer.load()",
)
for name in ("EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR"):  # and learn nothing
    source = "\\n".join(
        f"{name} = 0.0" if line.startswith(f"{name} = ") else line for line in source.splitlines()
    ) + "\\n"
train.write_text(source)
"""


@pytest.mark.slow
def test_7_nanochat_training_cannot_read_the_validation_split_through_a_child(tmp_path, monkeypatch):
    from nanochat_support import TINY, write_corpus

    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "corpus")
    workspace = tmp_path / "nanochat"
    options = [f"-o{key}={value}" for key, value in TINY.items() if key != "preset"]
    init = invoke("init", "nanochat_bpb", str(workspace), "--preset", "cpu", "--data", str(corpus), *options)
    assert init.exit_code == 0, init.output
    monkeypatch.chdir(workspace)
    script = tmp_path / "attacker.py"
    script.write_text(NANOCHAT_ATTACK)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    agent = ["--agent", "command", "--agent-command", command]
    result = invoke(
        "run", *agent, "--tag", "t", "--budget", "10", "--max-experiments", "1", "--accept", "strict"
    )
    assert result.exit_code == 0, result.output
    baseline, attacked = History(workspace / ".autoresearch" / "history.db").experiments("t")
    log = (workspace / attacked["log_path"]).read_text()  # relative to the workspace, or absolute
    assert "attack: read 0 bytes of validation rows" in log, log[-2000:]
    assert attacked["status"] != "keep", (attacked["status"], attacked["metric"], baseline["metric"])


def test_the_users_own_worktrees_are_left_alone(ws, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    git(ws, "worktree", "add", "-q", "--detach", str(elsewhere))
    elsewhere.rename(tmp_path / "moved")  # gone from where git knows it: prunable, but the user's
    assert invoke("run", "--tag", "t", "--accept", "strict", "--max-experiments", "0").exit_code == 0
    assert str(elsewhere) in git(ws, "worktree", "list")
