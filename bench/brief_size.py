"""Prompt size per experiment against ledger size, and the share of it that prompt caching serves.

The brief is rendered exactly as the engine renders it for an agent, after a ledger of N earlier
experiments. Tokens are estimated as characters / 4. The stable part (above the volatile marker:
rules, program, editable and protected files, incumbent) is what the anthropic agent marks for
caching; between two experiments with no keep it is a cache read, the rest is fresh input.

    python bench/brief_size.py [--file train.py] [--json]

The editable file defaults to nanochat_bpb's train.py template, the size a real brief carries.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from overhead import CountingAgent, InstantTarget, prefill, workspace

from autoresearch.agents.prompt import split_brief
from autoresearch.engine import Engine, RunOptions
from autoresearch.history import History

SIZES = (10, 100, 1_000, 10_000)
DEFAULT_FILE = Path(__file__).parent.parent / "plugins" / "nanochat_bpb" / "template" / "train.py"


def tokens(text: str) -> int:
    return len(text) // 4


def measure(size: int, editable: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp) / "ws")
        (ws.root / "model.py").write_text(editable)
        ws.commit_files("the editable file of a real target")
        ws.ensure_state_dir()
        history = History(ws.state_dir / "history.db")
        prefill(history, ws, "bench", size)
        engine = Engine(ws, InstantTarget(), CountingAgent(), history, RunOptions(tag="bench"))
        stable, volatile = split_brief(engine.preview_brief(size))
        total = tokens(stable) + tokens(volatile)
        return {"tokens": total, "stable": tokens(stable), "cache_read_share": tokens(stable) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="the editable file's content")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    editable = args.file.read_text()
    results = {size: measure(size, editable) for size in SIZES}
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'ledger rows':>12}  {'brief tokens':>12}  {'cacheable':>9}  {'cache-read share':>16}")
    for size, r in results.items():
        print(f"{size:>12}  {r['tokens']:>12}  {r['stable']:>9}  {r['cache_read_share']:>16.0%}")
    growth = results[SIZES[-1]]["tokens"] / results[SIZES[1]]["tokens"]
    print(f"brief at 10,000 rows vs 100 rows: {growth:.2f}x (bounded by the history window)")


if __name__ == "__main__":
    main()
