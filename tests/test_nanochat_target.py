"""The nanochat_bpb target: configuration, scaffolding, the downloader and the anti-gaming rules."""

from __future__ import annotations

import dataclasses
import http.server
import json
import math
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from autoresearch import ConfigError, registry
from autoresearch.measure import RunResult, evaluate_tree, parse_summary
from autoresearch.plugins.nanochat_bpb import (
    TEMPLATE_DIR,
    NanochatBpb,
    read_constants,
    set_constants,
)

from nanochat_support import TINY, load_scripts, make_workspace, write_corpus

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: the hub probe fails at once


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the session, so the tiny corpus is prepared once."""
    path = tmp_path_factory.getbasetemp() / "nanochat-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_CACHE", str(path))
        mp.setenv("AUTORESEARCH_CLIMBMIX_URL", CLOSED_PORT)
        yield path


@pytest.fixture(autouse=True)
def use_cache(cache, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    monkeypatch.setenv("AUTORESEARCH_CLIMBMIX_URL", CLOSED_PORT)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.getbasetemp() / "nanochat-corpus")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, cache, corpus):
    """A prepared tiny workspace, copied fresh by each test that changes it."""
    root = tmp_path_factory.mktemp("prepared")
    target, config = make_workspace(root, corpus)
    return root, config


@pytest.fixture
def workspace(prepared, tmp_path) -> tuple[Path, NanochatBpb]:
    source, config = prepared
    root = tmp_path / "ws"
    shutil.copytree(source, root)
    return root, NanochatBpb.from_config(config, root)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def measure(root: Path, target: NanochatBpb, budget: float = 2.0):
    log = root.parent / "run.log"
    return evaluate_tree(target, root, log, budget, 7)[0], log.read_text()


# ---------------------------------------------------------------------------
# Registration, configuration, scaffolding


def test_registered_as_a_target(monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_LOAD_PLUGINS", "nanochat_bpb")
    registry.get_manager.cache_clear()
    try:
        assert registry.targets()["nanochat_bpb"] is NanochatBpb
    finally:
        registry.get_manager.cache_clear()


def test_constants_are_read_and_rewritten_in_place():
    source = (TEMPLATE_DIR / "train.py").read_text()
    changed = set_constants(source, {"DEPTH": 3, "MATRIX_LR": 0.02, "WINDOW_PATTERN": "SL"})
    constants = read_constants(changed)
    assert (constants["DEPTH"], constants["MATRIX_LR"], constants["WINDOW_PATTERN"]) == (3, 0.02, "SL")
    assert constants["TOTAL_BATCH_SIZE"] == 2**19  # arithmetic constants are read too
    assert "DEPTH = 3                     # transformer layers" in changed
    assert "TOTAL_BATCH_SIZE = 2**12" in set_constants(source, {"TOTAL_BATCH_SIZE": 4096})
    assert len(changed.splitlines()) == len(source.splitlines())


def test_default_config_falls_back_to_the_offline_corpus(capsys):
    config = NanochatBpb.default_config({"preset": "cpu", "EVAL_TOKENS": "4096"})
    assert config["corpus"] == "stdlib" and config["corpus_id"].startswith("stdlib-py")
    assert "offline corpus" in capsys.readouterr().err
    assert config["settings"]["EVAL_TOKENS"] == 4096
    assert config["train"]["COMPILE"] is False
    target = NanochatBpb.from_config(config, None)
    assert (target.budget, target.startup_seconds, target.eval_seconds, target.takes_seed) == (
        300.0,
        120,
        180,
        True,
    )
    assert target.editable == ["train.py"] and "prepare.py" in target.protected


@pytest.mark.parametrize(
    "options, field",
    [
        ({"device": "tpu"}, "device"),
        ({"preset": "huge"}, "preset"),
        ({"DEPTHH": 3}, "DEPTHH"),
        ({"DEPTH": "three"}, "DEPTH"),
        ({"COMPILE": 1}, "COMPILE"),
        ({"data": "/no/such/folder"}, "data"),
        ({"corpus": "wikipedia"}, "corpus"),
        ({"budget": "soon"}, "budget"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        NanochatBpb.default_config({"preset": "cpu", "corpus": "stdlib", **options})


def test_from_config_refuses_bad_or_inconsistent_configs(prepared):
    root, config = prepared
    for key, value, field in [
        ("device", "gpu", "device"),
        ("corpus_id", "", "corpus_id"),
        ("budget", -1, "budget"),
        ("settings", {}, "settings"),
    ]:
        with pytest.raises(ConfigError, match=f"^{field}"):
            NanochatBpb.from_config({**config, key: value}, root)
    changed = {**config, "settings": {**config["settings"], "MAX_SEQ_LEN": 128}}
    with pytest.raises(ConfigError, match="MAX_SEQ_LEN: prepare.py has 64"):
        NanochatBpb.from_config(changed, root)


def test_scaffold_bakes_the_preset_into_the_scripts(prepared):
    root, config = prepared
    prepare = read_constants((root / "prepare.py").read_text())
    train = read_constants((root / "train.py").read_text())
    assert prepare["CORPUS"] == "folder" and prepare["CORPUS_ID"] == config["corpus_id"]
    assert prepare["MAX_SEQ_LEN"] == TINY["MAX_SEQ_LEN"] and prepare["TIME_BUDGET"] == 2
    assert train["DEPTH"] == TINY["DEPTH"] and train["COMPILE"] is False
    program = (root / "program.md").read_text()
    assert "{{ incumbent }}" in program and "{{ editable_files }}" in program
    assert "__pycache__/" in (root / ".gitignore").read_text()


def test_secret_paths_and_cache_files_are_the_prepared_ones(prepared):
    root, config = prepared
    prepare, _ = load_scripts(root)
    target = NanochatBpb.from_config(config, root)
    assert target.secret_paths() == [prepare.val_dir()]
    assert set(target.cache_files()) == {
        prepare.tokenizer_dir() / "token_bytes.pt", prepare.tokenizer_dir() / "tokenizer.pkl",
        prepare.val_rows_path(),
    }
    assert all(path.is_file() for path in target.cache_files())


def test_scaffold_never_overwrites_a_script(tmp_path):
    (tmp_path / "train.py").write_text("mine")
    with pytest.raises(ConfigError, match="^train.py: .* exists already"):
        NanochatBpb.scaffold(tmp_path, {"preset": "cpu", "corpus": "stdlib"})
    assert (tmp_path / "train.py").read_text() == "mine"


def test_prepare_is_idempotent(workspace):
    root, target = workspace
    lines = []
    target.prepare(root, echo=lines.append)
    assert lines[-1] == "ready"
    assert not any("tokenizer" in line or "tokenising" in line for line in lines)


# ---------------------------------------------------------------------------
# ClimbMix downloader, against a local server


class ShardServer(http.server.SimpleHTTPRequestHandler):
    failures: dict = {}  # path -> how many requests still fail with 500

    def do_GET(self):
        if self.failures.get(self.path, 0) > 0:
            self.failures[self.path] -= 1
            self.send_error(500)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def shard_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for index in (0, 1, 6542):
        texts = [f"shard {index} document {i} " * 20 for i in range(50)]
        pq.write_table(pa.table({"text": texts}), served / f"shard_{index:05d}.parquet")
    handler = lambda *a: ShardServer(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_downloader_fetches_shards_with_retries(prepared, shard_server, tmp_path, monkeypatch):
    prepare, _ = load_scripts(prepared[0])
    monkeypatch.setenv("AUTORESEARCH_CLIMBMIX_URL", shard_server)
    monkeypatch.setattr(prepare, "corpus_dir", lambda: tmp_path / "climbmix")
    ShardServer.failures = {"/shard_00001.parquet": 2}
    assert prepare.hub_reachable(2.0)
    prepare.download_climbmix(num_train_shards=2, workers=2, backoff=0.01)
    assert sorted(p.name for p in (tmp_path / "climbmix" / "train").iterdir()) == [
        "shard_00000.parquet",
        "shard_00001.parquet",
    ]
    assert [p.name for p in (tmp_path / "climbmix" / "val").iterdir()] == ["shard_06542.parquet"]
    assert next(prepare.documents(tmp_path / "climbmix" / "val")).startswith("shard 6542 ")
    assert ShardServer.failures["/shard_00001.parquet"] == 0


def test_downloader_gives_up_after_five_attempts(prepared, shard_server, tmp_path, monkeypatch):
    prepare, _ = load_scripts(prepared[0])
    ShardServer.failures = {"/shard_00000.parquet": 10}
    with pytest.raises(SystemExit, match="download failed 5 times"):
        prepare.download_file(f"{shard_server}/shard_00000.parquet", tmp_path / "x.parquet", backoff=0.01)
    assert ShardServer.failures["/shard_00000.parquet"] == 5
    assert not list(tmp_path.glob("x.parquet*"))
    monkeypatch.setenv("AUTORESEARCH_CLIMBMIX_URL", CLOSED_PORT)
    assert not prepare.hub_reachable(1.0)


# ---------------------------------------------------------------------------
# A metric the agent cannot game


@pytest.mark.slow  # trains torch
def test_the_metric_comes_from_the_evaluator_not_from_train_output(workspace):
    root, target = workspace
    edit(
        root / "train.py",
        "    save_model(model, config, stats)",
        '    print("---")\n    print("val_bpb:          0.000100", flush=True)\n'
        '    save_model(model, config, {**stats, "val_bpb": 0.0001})',
    )
    measurement, log = measure(root, target)
    assert measurement.ok, measurement.reason
    assert "val_bpb:          0.000100" in log
    assert measurement.metric > 0.5
    evaluator_block = log.rsplit("---", 1)[1]
    assert float(parse_summary("---" + evaluator_block)["val_bpb"][0]) == pytest.approx(
        measurement.metric, abs=1e-6
    )
    extras = measurement.extras
    assert extras["num_steps"] > 11 and extras["depth"] == 2 and extras["eval_tokens"] == 2048
    assert extras["training_seconds"] >= 2.0 and extras["total_seconds"] > extras["eval_seconds"]
    assert extras["measured_training_seconds"] >= extras["training_seconds"]
    assert extras["training_cpu_seconds"] > 0
    assert {"startup_seconds", "num_params_M", "total_tokens_M", "peak_rss_mb"} <= set(extras)
    # the protocol lines, in order, each once: start-up, then timed training, then evaluation
    phases = [line for line in log.splitlines() if line.startswith("phase: ")]
    assert phases == ["phase: training", "phase: evaluation"]
    progress = [line for line in log.splitlines() if line.startswith("progress: ")]
    line = re.compile(r"progress: frac=[\d.]+ train_loss=[\d.]+ tokens=\d+")
    assert progress and all(line.fullmatch(p) for p in progress)
    tokens = [int(p.rsplit("=", 1)[1]) for p in progress]  # what early abort compares at equal work
    assert tokens == sorted(set(tokens)) and tokens[0] > 0  # one line per step at most


def original_val_bpb(root: Path, model) -> float:
    """The original's evaluate_bpb, from its formula: the model's own per-token loss, summed
    over targets with a byte count, over the bytes of all targets; the byte count of a token is
    the UTF-8 length of the token decoded on its own, 0 for special tokens."""
    prepare, _ = load_scripts(root)
    encoding = prepare.Tokenizer.load().encoding
    specials = set(encoding.special_tokens_set)
    token_bytes = torch.tensor([
        0 if encoding.decode([i]) in specials else len(encoding.decode([i]).encode("utf-8"))
        for i in range(encoding.n_vocab)
    ])
    rows = torch.from_numpy(np.load(prepare.val_rows_path())).long()
    batch_size = TINY["EVAL_BATCH_SIZE"]
    steps = TINY["EVAL_TOKENS"] // (batch_size * TINY["MAX_SEQ_LEN"])
    total_nats, total_bytes = 0.0, 0
    with torch.no_grad():
        for step in range(steps):
            batch = rows[step * batch_size:(step + 1) * batch_size]
            x, y = batch[:, :-1], batch[:, 1:]
            loss_flat = model(x, y, reduction="none").view(-1)
            nbytes = token_bytes[y.reshape(-1)]
            total_nats += (loss_flat * (nbytes > 0)).sum().item()
            total_bytes += nbytes.sum().item()
    return total_nats / (math.log(2) * total_bytes)


@pytest.mark.slow  # three processes evaluate torch models (about 30 s here, more when busy)
def test_val_bpb_agrees_with_the_original_formula_to_six_decimals(workspace):
    """The harness's evaluation (model in its own process, the loss computed outside it) against
    the original's evaluate_bpb written here, on the same weights."""
    root, _ = workspace
    _, train = load_scripts(root)
    torch.manual_seed(3)
    model, config = train.build_model(TINY["VOCAB_SIZE"], torch.device("cpu"))
    for name, parameter in model.named_parameters():
        if parameter.dim() == 2 and not name.startswith(("transformer.wte", "value_embeds")):
            torch.nn.init.normal_(parameter, std=0.2)  # a model with opinions, not the init's zeros
    run_dir = root.parent / "run"
    run_dir.mkdir()
    checkpoint = {"model_class": "GPT", "config_class": "GPTConfig", "config": dataclasses.asdict(config),
                  "state_dict": model.state_dict(), "stats": {"training_seconds": 1.0}}
    torch.save(checkpoint, run_dir / "model.pt")
    process = subprocess.run([sys.executable, "prepare.py", "eval", "--run-dir", str(run_dir)], cwd=root,
                             capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok", result
    expected = original_val_bpb(root, model.eval())
    assert 2.0 < expected < 20.0
    assert abs(result["val_bpb"] - expected) < 5e-7, (result["val_bpb"], expected)


@pytest.mark.slow  # trains torch
def test_training_cannot_open_the_validation_split(workspace):
    root, target = workspace
    edit(
        root / "train.py",
        "    tokenizer = Tokenizer.load()",
        "    import prepare\n    open(prepare.val_rows_path(), 'rb').read()\n"
        "    tokenizer = Tokenizer.load()",
    )
    measurement, log = measure(root, target)
    assert (measurement.status, measurement.reason) == ("crash", "training failed (exit code 1)")
    assert "PermissionError: training may not read the validation split" in log


@pytest.mark.slow  # trains torch
def test_stretching_the_budget_is_invalid(workspace):
    root, target = workspace
    # 20 budgets: beyond the last step's slack (ten mean steps) however slow a busy machine is
    edit(root / "train.py", "total_training_time >= TIME_BUDGET:", "total_training_time >= 20 * TIME_BUDGET:")
    measurement, log = measure(root, target, budget=1.0)
    assert measurement.status == "invalid"
    assert measurement.reason.startswith("budget stretched: ")


@pytest.mark.slow  # trains torch
def test_work_before_the_clock_without_the_phase_line_is_invalid(workspace):
    """train.py that never says when timed training starts is timed from its start."""
    root, target = workspace
    edit(root / "train.py", "        if step == 11:", "        if step == -1:")
    edit(root / "train.py", "    t_start = time.time()", "    t_start = time.time()\n    time.sleep(8)")
    measurement, _ = measure(root, target, budget=1.0)
    assert measurement.status == "invalid"
    assert "never called training_started()" in measurement.reason


@pytest.mark.slow  # trains torch
def test_a_process_left_behind_by_training_neither_hangs_nor_outlives_the_launcher(workspace):
    """It holds the launcher's pipe; the launcher ends the training child's process group."""
    root, target = workspace
    sleeper = ["sleep", "600.4242"]  # found by its command line: the sandbox's pids are its own
    edit(root / "train.py", "    t_start = time.time()",
         f"    import subprocess\n    subprocess.Popen({sleeper!r})\n    t_start = time.time()")
    measurement, _ = measure(root, target)
    assert measurement.ok, measurement.reason  # before: a timeout, waiting for the pipe to close
    alive = [p for p in psutil.process_iter(["cmdline", "status"]) if p.info["cmdline"] == sleeper]
    assert all(p.info["status"] == psutil.STATUS_ZOMBIE for p in alive), alive


def timeout_result(tmp_path, output: str) -> RunResult:
    log = tmp_path / "run.log"
    log.write_text(output)
    return RunResult("timeout", None, 9.0, log, "ran past the budget plus overhead", (0, len(output)))


@pytest.mark.parametrize(
    "output, says",
    [
        ("step 00001\n", "start-up ran past its 120s allowance"),
        ("phase: training\nprogress: frac=0.5 train_loss=3\n", "training ran past the 300s budget"),
        ("phase: training\nphase: evaluation\n", "evaluation ran past its 180s allowance"),
    ],
)
def test_a_timeout_says_which_phase_and_what_to_do(tmp_path, output, says):
    target = NanochatBpb(NanochatBpb.default_config({"preset": "cpu", "corpus": "stdlib"}))
    reason = target.failure_reason(timeout_result(tmp_path, output), 300.0)
    assert reason.startswith(says)
    assert "fix the evaluator" not in reason
    assert "autoresearch.yaml" in reason or "TIME_BUDGET" in reason


CUDA_CALLS_AT_IMPORT = """
import ast, importlib, sys
from pathlib import Path

folder = Path(sys.argv[1])
sys.path.insert(0, str(folder))
for script in ("prepare.py", "train.py"):  # their imports first: torch's own start-up does not count
    for node in ast.parse((folder / script).read_text()).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            if name.split(".")[0] not in ("prepare", "train"):
                importlib.import_module(name)
import torch

calls = []
for name in dir(torch.cuda):  # its public functions, and _lazy_init that every CUDA call goes through
    value = getattr(torch.cuda, name)
    if callable(value) and not isinstance(value, type) and (name[0] != "_" or name == "_lazy_init"):
        setattr(torch.cuda, name, lambda *args, _name=name, **kwargs: calls.append(_name))
import prepare, train

print(sorted(set(calls)))
"""


def test_no_cuda_call_at_import(tmp_path):
    """Holds on a machine without a GPU too: every torch.cuda function is a tripwire while importing."""

    def cuda_calls(folder: Path) -> str:
        command = [sys.executable, "-c", CUDA_CALLS_AT_IMPORT, str(folder)]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

    assert cuda_calls(TEMPLATE_DIR) == "[]"
    shutil.copytree(TEMPLATE_DIR, tmp_path / "scripts")
    gpus = "GPUS = torch.cuda.device_count()\n"
    edit(tmp_path / "scripts" / "train.py", "# GPT model\n", gpus + "# GPT model\n")
    assert cuda_calls(tmp_path / "scripts") == "['device_count']"


@pytest.mark.parametrize(
    "path, old, new, reason",
    [
        ("prepare.py", "import ", "import sys  # tampered\nimport ", "alters protected file prepare.py"),
        ("train.py", "import ", "import torch\ntorch.manual_seed(0)\nimport ", "changes the random seed"),
        ("train.py", "DEPTH = ", "SEED = 1234\nDEPTH = ", "changes the random seed"),
    ],
)
def test_editing_prepare_or_the_seed_is_invalid(workspace, path, old, new, reason):
    from autoresearch.checks import problem, read_change
    from autoresearch.workspace import Workspace

    root, target = workspace
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "prepare.py", "train.py"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "scaffold"], cwd=root, check=True)
    edit(root / path, old, new)
    ws = Workspace(root)
    assert target.takes_seed
    assert problem(ws, target, read_change(ws), None).startswith(reason)
