"""The ``nanochat_bpb`` target: Karpathy's autoresearch experiment, single-device GPT pretraining
for a fixed time budget, ratcheted on val_bpb (lower is better).

A workspace holds ``prepare.py`` (protected: data, tokenizer, dataloader, the launcher and the
evaluator), ``train.py`` (the agent's: model, optimizer, training loop) and ``program.md``. Both
scripts are rendered from ``template/`` with the preset's constants baked in.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
import importlib.util
import json
import operator
import os
import re
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

from autoresearch import ConfigError, Measurement, Metric, Target, hookimpl
from autoresearch.measure import Evaluation, RunResult

TEMPLATE_DIR = Path(__file__).parent / "template"
DEVICES = ("auto", "cuda", "mps", "cpu")
CORPORA = ("climbmix", "stdlib", "folder")
SETTINGS = ("MAX_SEQ_LEN", "VOCAB_SIZE", "EVAL_TOKENS", "EVAL_BATCH_SIZE", "NUM_TRAIN_SHARDS")
LARGE_GPU_BYTES = 60 * 2**30  # the original's batch needs ~45 GB
HUB_PROBE_SECONDS = 3.0

# Each preset: harness settings (prepare.py), train.py's starting hyperparameters (only those
# that differ from the template, which holds the original's), and the seconds the kill deadline
# adds to the budget for start-up (incl. compilation and the untimed first steps) and evaluation.
PRESETS = {
    "gpu": {
        "settings": {
            "MAX_SEQ_LEN": 2048,
            "VOCAB_SIZE": 8192,
            "EVAL_TOKENS": 40 * 524288,
            "EVAL_BATCH_SIZE": 32,
            "NUM_TRAIN_SHARDS": 10,
        },
        "train": {},
        "startup_seconds": 180,
        "eval_seconds": 180,
    },
    "small-gpu": {
        "settings": {
            "MAX_SEQ_LEN": 1024,
            "VOCAB_SIZE": 8192,
            "EVAL_TOKENS": 10 * 524288,
            "EVAL_BATCH_SIZE": 16,
            "NUM_TRAIN_SHARDS": 4,
        },
        "train": {"DEPTH": 6, "TOTAL_BATCH_SIZE": 2**17, "DEVICE_BATCH_SIZE": 32},
        "startup_seconds": 180,
        "eval_seconds": 180,
    },
    "cpu": {
        "settings": {
            "MAX_SEQ_LEN": 256,
            "VOCAB_SIZE": 4096,
            "EVAL_TOKENS": 2**17,
            "EVAL_BATCH_SIZE": 16,
            "NUM_TRAIN_SHARDS": 1,
        },
        "train": {
            "DEPTH": 2,
            "HEAD_DIM": 64,
            "TOTAL_BATCH_SIZE": 2**12,
            "DEVICE_BATCH_SIZE": 16,
            "COMPILE": False,
        },
        # generous for busy machines: quiet, start-up takes ~15 s and evaluation ~45 s (two model
        # processes, 512 rows and the causality check's 255)
        "startup_seconds": 120,
        "eval_seconds": 180,
    },
}


# ---------------------------------------------------------------------------
# The workspace scripts' constants: read and rewritten in place


def _value(node: ast.expr):
    """A constant expression's value: literals and arithmetic on them (``40 * 524288``)."""
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}
        return ops[type(node.op)](_value(node.left), _value(node.right))
    return ast.literal_eval(node)


def read_constants(source: str) -> dict:
    """A script's UPPER_CASE module constants whose values are literals (or arithmetic on them)."""
    constants = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.isupper()
        ):
            try:
                constants[node.targets[0].id] = _value(node.value)
            except (ValueError, KeyError, TypeError):
                continue
    return constants


def literal(value) -> str:
    """Source text of a constant, written as the templates write them: double-quoted strings,
    and large powers of two as ``2**k`` (as the original writes its batch sizes)."""
    if isinstance(value, str):
        return json.dumps(value)
    if type(value) is int and value >= 1024 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return repr(value)


def set_constants(source: str, values: dict) -> str:
    """``source`` with each ``NAME = value`` line of ``values`` rewritten, aligned comment kept."""
    for name, value in values.items():
        pattern = re.compile(rf"^{name} = .*?(?P<comment>[ \t]+#.*)?$", re.MULTILINE)
        match = pattern.search(source)
        if match is None:
            raise KeyError(name)
        line = f"{name} = {literal(value)}"
        comment = match.group("comment")
        if comment:
            column = match.start("comment") - match.start() + len(comment) - len(comment.lstrip())
            line = f"{line:<{column}}" if len(line) + 2 <= column else f"{line}  "
            line += comment.lstrip()
        source = source[: match.start()] + line + source[match.end() :]
    return source


@cache
def template_constants(name: str) -> dict:
    return read_constants((TEMPLATE_DIR / name).read_text())


@cache
def template_prepare():
    """The template's prepare.py as a module, to reuse its corpus ids and hub probe."""
    path = TEMPLATE_DIR / "prepare.py"
    spec = importlib.util.spec_from_file_location("nanochat_bpb_prepare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Configuration: preset from the hardware, corpus from the options or the network


def detect_preset(device: str) -> str:
    """The largest preset the hardware runs: the original on >= 60 GB GPUs."""
    import torch  # imported here: listing plugins should not pay for torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        memory = torch.cuda.get_device_properties(0).total_memory
        return "gpu" if memory >= LARGE_GPU_BYTES else "small-gpu"
    if device == "cuda":
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available")
    if device in ("auto", "mps") and torch.backends.mps.is_available():
        return "small-gpu"
    if device == "mps":
        raise ConfigError("device: mps was asked for but is not available")
    return "cpu"


def choose_corpus(options: dict) -> tuple[str, str]:
    """(corpus, data folder): --data, else -o corpus=..., else ClimbMix if the hub answers."""
    if options.get("data"):
        folder = Path(options["data"]).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"data: {folder} is not a folder")
        return "folder", str(folder)
    corpus = options.get("corpus")
    if corpus is not None:
        if corpus not in ("climbmix", "stdlib"):
            raise ConfigError(f"corpus: expected climbmix or stdlib (or --data), not {corpus!r}")
        return corpus, ""
    if template_prepare().hub_reachable(HUB_PROBE_SECONDS):
        return "climbmix", ""
    print(
        f"nanochat_bpb: the ClimbMix hub did not answer within {HUB_PROBE_SECONDS:g}s; "
        "using the offline corpus (this Python's standard library)",
        file=sys.stderr,
    )
    return "stdlib", ""


def coerce(name: str, value, default):
    """An option's value (a string from ``-o KEY=VALUE``) checked against the default's type."""
    problem = ConfigError(f"{name}: expected a {type(default).__name__}, not {value!r}")
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise problem from None
    expected = (int, float) if isinstance(default, float) else type(default)
    if isinstance(value, bool) is not isinstance(default, bool) or not isinstance(value, expected):
        raise problem
    return value


def split_overrides(options: dict) -> tuple[dict, dict]:
    """UPPER_CASE options: harness settings (prepare.py) and starting hyperparameters (train.py)."""
    settings, train = {}, {}
    train_defaults = template_constants("train.py")
    prepare_defaults = template_constants("prepare.py")
    for name, value in options.items():
        if not name.isupper():
            continue
        if name in SETTINGS:
            settings[name] = coerce(name, value, prepare_defaults[name])
        elif name in train_defaults and not isinstance(train_defaults[name], (tuple, list)):
            train[name] = coerce(name, value, train_defaults[name])
        else:
            raise ConfigError(
                f"{name}: not a setting of nanochat_bpb (settings: "
                f"{', '.join(SETTINGS)}, or a scalar train.py hyperparameter)"
            )
    return settings, train


def check_positive(config: dict, key: str) -> None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}: expected a positive number, not {value!r}")


# ---------------------------------------------------------------------------
# The target


class NanochatBpb(Target):
    name = "nanochat_bpb"
    description = (
        "Karpathy's autoresearch: pretrain a small GPT for a fixed time budget on one "
        "device; val_bpb on a held-out split, computed by the harness"
    )
    template = "nanochat_bpb.md"
    objective = (
        "Lower val_bpb: the bits per byte of a small GPT pretrained from scratch in a "
        "fixed time budget, measured on a held-out split by the harness."
    )

    def __init__(self, config: dict):
        self.config = config  # the validated autoresearch.yaml mapping (see default_config)
        super().__init__(
            metric=Metric("val_bpb", "lower"),
            editable=["train.py"],
            protected=["prepare.py", "program.md"],
            budget=self.config["budget"],
            startup_seconds=self.config["startup_seconds"],
            eval_seconds=self.config["eval_seconds"],
            takes_seed=True,
            curve=Metric("train_loss", "lower"),  # its progress lines: early abort compares them
            curve_work="tokens",  # ...also at equal tokens, which a busy machine does not skew
            throughput="tokens_per_second",
        )
        self.gpu = self.config["device"] in ("auto", "cuda")  # a Ray task asks for a GPU

    @classmethod
    def default_config(cls, options: dict) -> dict:
        """The preset for this hardware (or ``preset``), the corpus (``data``, ``corpus``, else
        ClimbMix if its hub answers), and UPPER_CASE overrides of the preset's values."""
        device = options.get("device", "auto")
        if device not in DEVICES:
            raise ConfigError(f"device: expected one of {', '.join(DEVICES)}, not {device!r}")
        preset_name = options.get("preset") or detect_preset(device)
        if preset_name not in PRESETS:
            raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, not {preset_name!r}")
        preset = PRESETS[preset_name]
        settings, train = split_overrides(options)
        corpus, data = choose_corpus(options)
        try:
            corpus_id = template_prepare().find_corpus_id(corpus, data)
        except SystemExit as error:
            raise ConfigError(f"data: {error}") from None
        config = {
            "preset": preset_name,
            "device": device,
            "corpus": corpus,
            "corpus_id": corpus_id,
            "budget": coerce("budget", options.get("budget", 300), 300.0),
            "startup_seconds": preset["startup_seconds"],
            "eval_seconds": preset["eval_seconds"],
            "settings": {**preset["settings"], **settings},
            "train": {**preset["train"], **train},
        }
        if data:
            config["data"] = data
        return config

    @classmethod
    def from_config(cls, config: dict, root: Path | None) -> NanochatBpb:
        cls.validate(config)
        if root is not None and (Path(root) / "prepare.py").exists():
            baked = read_constants((Path(root) / "prepare.py").read_text())
            expected = {"PRESET": config["preset"], "CORPUS_ID": config["corpus_id"], **config["settings"]}
            for name, value in expected.items():
                if baked.get(name) != value:
                    raise ConfigError(
                        f"{name}: prepare.py has {baked.get(name)!r} but "
                        f"autoresearch.yaml says {value!r}; make a new workspace"
                    )
        return cls(config)

    @staticmethod
    def validate(config: dict) -> None:
        """Raise ConfigError, naming the field, for a missing or bad value."""
        for key, allowed in (("preset", PRESETS), ("device", DEVICES), ("corpus", CORPORA)):
            if config.get(key) not in allowed:
                raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, not {config.get(key)!r}")
        if not isinstance(config.get("corpus_id"), str) or not config["corpus_id"]:
            raise ConfigError("corpus_id: missing; make a new workspace")
        if config["corpus"] == "folder" and not isinstance(config.get("data"), str):
            raise ConfigError("data: a folder corpus needs the folder's path")
        for key in ("budget", "startup_seconds", "eval_seconds"):
            check_positive(config, key)
        settings = config.get("settings")
        if not isinstance(settings, dict) or set(settings) != set(SETTINGS):
            raise ConfigError(f"settings: expected exactly {', '.join(SETTINGS)}")
        for key in SETTINGS:
            if not isinstance(settings[key], int) or settings[key] <= 0:
                raise ConfigError(f"settings.{key}: expected a positive integer")
        if not isinstance(config.get("train"), dict):
            raise ConfigError("train: expected a mapping of train.py constants")

    @classmethod
    def scaffold(cls, root: Path, options: dict) -> dict:
        for name in ("prepare.py", "train.py", "program.md"):
            if (Path(root) / name).exists():
                raise ConfigError(
                    f"{name}: {Path(root) / name} exists already; nanochat_bpb "
                    "makes its workspace in a new folder"
                )
        config = cls.default_config(options)
        cls(config).write_scripts(Path(root))
        program = importlib.resources.files("autoresearch.program_templates") / cls.template
        (Path(root) / "program.md").write_text(program.read_text())
        gitignore = Path(root) / ".gitignore"
        lines = gitignore.read_text().splitlines() if gitignore.exists() else []
        if "__pycache__/" not in lines:
            gitignore.write_text("\n".join([*lines, "__pycache__/"]) + "\n")
        return config

    def write_scripts(self, root: Path, train: bool = True) -> None:
        """prepare.py (and train.py) with this workspace's constants baked in."""
        c = self.config
        budget = int(c["budget"]) if float(c["budget"]).is_integer() else c["budget"]
        harness = {
            "PRESET": c["preset"],
            "DEVICE": c["device"],
            "CORPUS": c["corpus"],
            "CORPUS_ID": c["corpus_id"],
            "DATA_DIR": c.get("data", ""),
            "TIME_BUDGET": budget,
            **c["settings"],
        }
        prepare = set_constants((TEMPLATE_DIR / "prepare.py").read_text(), harness)
        (root / "prepare.py").write_text(prepare)
        if train:
            source = set_constants((TEMPLATE_DIR / "train.py").read_text(), c["train"])
            (root / "train.py").write_text(source)

    # -----------------------------------------------------------------------
    # What the sandbox must know about the cache (the names of iso's Target interface)

    def corpus_dir(self) -> Path:
        """The cache folder of this workspace's corpus (as prepare.py lays it out)."""
        cache = os.environ.get("AUTORESEARCH_CACHE") or Path.home() / ".cache" / "autoresearch"
        return Path(cache) / "nanochat_bpb" / self.config["corpus_id"]

    def secret_paths(self) -> list[Path]:
        """Absent while train.py trains: the validation split (documents and packed rows)."""
        return [self.corpus_dir() / "val"]

    def cache_files(self) -> list[Path]:
        """Files the metric depends on: the tokenizer, its byte table and the validation rows."""
        s = self.config["settings"]
        tokenizer = self.corpus_dir() / f"tokenizer_v{s['VOCAB_SIZE']}"
        rows = f"rows_v{s['VOCAB_SIZE']}_t{s['MAX_SEQ_LEN']}_n{s['EVAL_TOKENS']}_b{s['EVAL_BATCH_SIZE']}.npy"
        return [tokenizer / "token_bytes.pt", tokenizer / "tokenizer.pkl", self.corpus_dir() / "val" / rows]

    def prepare(self, root: Path | None, echo=print) -> None:
        """Run the workspace's prepare.py (outside a workspace, a rendered copy) with its output
        shown line by line: downloads, tokenizer training, tokenisation."""
        with tempfile.TemporaryDirectory(prefix="nanochat_bpb-") as scratch:
            if root is None:
                root = Path(scratch)
                self.write_scripts(root, train=False)
            proc = subprocess.Popen(
                [sys.executable, "prepare.py"],
                cwd=root,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            last = ""
            for line in proc.stdout:
                last = line.rstrip() or last
                echo(line.rstrip())
            if proc.wait() != 0:
                raise ConfigError(f"prepare.py failed: {last}")

    def evaluate(self, evaluation: Evaluation) -> Measurement:
        """Two commands: ``prepare.py train`` (the launcher; the validation split is a secret
        path, absent from its sandbox) and ``prepare.py eval`` (the evaluator). Neither imports
        train.py: training and the model run in their children. The metric is read only from the
        evaluator's result.json, never from train.py's output."""
        started = time.time()
        seed = evaluation.seed
        env = {"AUTORESEARCH_SEED": str(42 if seed is None else seed), "PYTHONDONTWRITEBYTECODE": "1"}
        budget, log_path = evaluation.budget, evaluation.log_path
        run_dir = evaluation.scratch / "run"
        run_dir.mkdir()
        python = [sys.executable, "prepare.py"]
        command = [*python, "train", "--budget", repr(float(budget)), "--run-dir", str(run_dir)]
        training = dataclasses.replace(self.allowances(budget), evaluation=0)  # evaluated below
        result = evaluation.run(command, deadline=training, env=env)
        outcome = read_outcome(run_dir / "train_report.json")
        if result.status == "ok" and outcome and outcome["status"] == "ok":
            command = [*python, "eval", "--run-dir", str(run_dir), "--started", repr(started)]
            result = evaluation.run(command, deadline=self.config["eval_seconds"], env=env, secrets=True)
            outcome = read_outcome(run_dir / "result.json")
        seconds = time.time() - started
        if result.status != "ok" or outcome is None:
            reason = self.failure_reason(result, budget)
            status = "crash" if result.status == "ok" else result.status
            return Measurement(status, reason=reason, seconds=seconds, log_path=str(log_path))
        status = outcome.pop("status")
        if status != "ok":
            status = "invalid" if status == "invalid" else "crash"
            return Measurement(status, reason=outcome.get("reason"), seconds=seconds, log_path=str(log_path))
        val_bpb = float(outcome.pop("val_bpb"))
        return Measurement("ok", metric=val_bpb, extras=outcome, seconds=seconds, log_path=str(log_path))

    def failure_reason(self, result: RunResult, budget: float) -> str:
        """Why a command ended without a result, and what the user can do about it."""
        if result.status != "timeout":
            return f"the harness ended without a result ({result.reason}); the log's last lines say why"
        phases = re.findall(r"^phase: (\w+)\s*$", result.output(), re.MULTILINE)
        startup, evaluation = self.config["startup_seconds"], self.config["eval_seconds"]
        if not phases:
            return (f"start-up ran past its {startup:g}s allowance before timed training began "
                    "(interpreter, compilation, the untimed warm-up steps): make train.py start "
                    "faster, or raise startup_seconds in autoresearch.yaml on a slow or busy machine")
        if phases[-1] == "training":
            return (f"training ran past the {budget:g}s budget and its allowances: train.py must "
                    "stop once its timed training reaches TIME_BUDGET")
        return (f"evaluation ran past its {evaluation:g}s allowance: raise eval_seconds in "
                "autoresearch.yaml on a slow or busy machine, or make the model's forward pass faster")


def read_outcome(path: Path) -> dict | None:
    """A result file of the launcher or the evaluator: a mapping with a status, else None."""
    try:
        outcome = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return outcome if isinstance(outcome, dict) and "status" in outcome else None


@hookimpl
def register_targets(register):
    register(NanochatBpb)
