"""Shared pieces of the nanochat_bpb tests: a small corpus, a tiny workspace and its scripts."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from autoresearch.plugins.nanochat_bpb import NanochatBpb

# A model and evaluation set small enough that a 2-second budget trains a few hundred steps.
TINY = {
    "preset": "cpu",
    "MAX_SEQ_LEN": 64,
    "VOCAB_SIZE": 512,
    "EVAL_TOKENS": 64 * 32,
    "EVAL_BATCH_SIZE": 8,
    "DEPTH": 2,
    "ASPECT_RATIO": 32,
    "HEAD_DIM": 32,
    "TOTAL_BATCH_SIZE": 256,
    "DEVICE_BATCH_SIZE": 4,
}


def write_corpus(folder: Path) -> Path:
    """About 600 kB of text in all three accepted formats, the same on every run."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:40]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sources]
    for i, text in enumerate(texts[:30]):
        (folder / f"doc{i:02d}.txt").write_text(text)
    with open(folder / "more.jsonl", "w") as f:
        for text in texts[30:35]:
            for part in text.split("\n\n\n"):
                f.write(json.dumps({"text": part}) + "\n")
    pq.write_table(pa.table({"text": texts[35:]}), folder / "rest.parquet")
    return folder


def make_workspace(root: Path, data: Path, **overrides) -> tuple[NanochatBpb, dict]:
    """A git repo scaffolded with the tiny settings and prepared (cached after the first time)."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    config = NanochatBpb.scaffold(root, {**TINY, "data": str(data), "budget": 2, **overrides})
    target = NanochatBpb.from_config(config, root)
    target.prepare(root, echo=lambda line: None)
    return target, config


def load_scripts(root: Path):
    """The workspace's prepare.py and train.py, imported as modules ``prepare`` and ``train``."""
    for name in ("prepare", "train"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("prepare"), importlib.import_module("train")
    finally:
        sys.path.remove(str(root))


def _template_prepare():
    """The template's prepare.py as a module (packing and peak tables need no workspace)."""
    from autoresearch.plugins.nanochat_bpb import template_prepare

    return template_prepare()


TEMPLATE_PREPARE = _template_prepare()
