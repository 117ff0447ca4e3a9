"""Early abort, measured: where the rule would have stopped candidates that ran to the end.

A run made with ``--no-early-abort`` still records every measurement's progress curve. This
benchmark replays the run's ledger in order, rebuilding the evidence the engine had before each
experiment (the incumbent's curves, the spread of repeated curves), and feeds each candidate's
first curve to the early-abort rule as if it arrived live. It reports:

- compute saved: the share of the discarded candidates' training that would not have run
  (1 − the fraction where the rule stops, summed over discarded candidates, over their count);
- keeps aborted: the share of kept candidates the rule would have stopped (each one a gain lost).

Goals: ≥ 30% of the compute of discarded candidates saved, ≤ 2% of keeps aborted.

With ``--run-nanochat DATA``, it first makes that run: a fresh ``nanochat_bpb`` workspace on the
CPU preset with the corpus folder DATA, ``mutate`` proposing ``--experiments`` candidates under a
``--budget`` of a few seconds, all run to the end (one measurement each, ``--accept strict``;
three baseline runs). Or analyse an existing run with
``--workspace DIR --tag TAG`` (any target with a curve key).

    python bench/early_abort.py --run-nanochat CORPUS [--experiments 24] [--budget 20] [--json]
    python bench/early_abort.py --workspace DIR --tag TAG [--after 0.2] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from autoresearch.abort import EarlyAbort
from autoresearch.accept import Evidence
from autoresearch.config import load_target
from autoresearch.history import History

# ---------------------------------------------------------------------------------------------
# Hyperparameters

EXPERIMENTS = 24  # mutate candidates, each run to the end
BUDGET = 20  # seconds of training per measurement (tiny: the bench must finish in minutes)
AFTER = 0.2  # the rule's earliest fraction (the engine's default)

# ---------------------------------------------------------------------------------------------
# Replaying a run


def where_stopped(rule: EarlyAbort, curve: list) -> float | None:
    """The fraction at which ``rule`` stops ``curve``, or None when it runs to the end."""
    for frac, value in curve:
        if rule({"frac": frac, rule.key.name: value}):
            return frac
    return None


def replay(rows: list[dict], target, after: float) -> dict:
    """Every candidate's would-be abort point, with the evidence of the rows before it."""
    evidence = Evidence(relative=target.metric.noise == "relative")
    outcomes = []
    for row in rows:
        curves = (row["curves"] or {}).get("samples") or []
        if row["status"] in ("keep", "discard") and curves and curves[0]:
            rule = EarlyAbort(target.curve, evidence.incumbent_curves, evidence.curve_groups, after=after)
            stopped = where_stopped(rule, curves[0])
            outcomes.append({"number": row["number"], "status": row["status"], "stopped_at": stopped,
                             "reason": rule.reason})  # fmt: skip
        if row["status"] in ("baseline", "keep", "discard"):
            evidence.add(row)
    return summarize(outcomes)


def summarize(outcomes: list[dict]) -> dict:
    discarded = [o for o in outcomes if o["status"] == "discard"]
    kept = [o for o in outcomes if o["status"] == "keep"]
    saved = sum(1 - o["stopped_at"] for o in discarded if o["stopped_at"] is not None)
    keeps_aborted = sum(o["stopped_at"] is not None for o in kept)
    return {
        "candidates": len(outcomes),
        "discarded": len(discarded),
        "kept": len(kept),
        "discards_aborted": sum(o["stopped_at"] is not None for o in discarded),
        "compute_saved_of_discards": round(saved / len(discarded), 3) if discarded else None,
        "keeps_aborted": round(keeps_aborted / len(kept), 3) if kept else None,
        "outcomes": outcomes,
    }


# ---------------------------------------------------------------------------------------------
# Making a nanochat run with every candidate run to the end


def run_nanochat(data: Path, experiments: int, budget: float, root: Path) -> Path:
    workspace = root / "ws"
    autoresearch = [sys.executable, "-m", "autoresearch.cli"]
    # a small evaluation keeps it short (the curves, not val_bpb's precision, are measured here)
    init = ["init", "nanochat_bpb", str(workspace), "--preset", "cpu", "--data", str(data),
            "-o", "EVAL_TOKENS=8192"]  # fmt: skip
    subprocess.run([*autoresearch, *init], check=True)
    # generous allowances: a busy machine must not turn the bench into timeouts
    config = workspace / "autoresearch.yaml"
    text = re.sub(r"^(startup|eval)_seconds: .*$", r"\1_seconds: 600", config.read_text(), flags=re.M)
    config.write_text(text)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", *identity, "commit", "-qam", "bench: allowances"], cwd=workspace, check=True)
    # one measurement per candidate keeps the bench short (where the rule stops a curve does not
    # depend on the decision); three baseline runs give the spread of repeated curves
    run = ["run", "--agent", "mutate", "--tag", "bench", "--budget", str(budget), "--no-early-abort",
           "--max-experiments", str(experiments), "--accept", "strict", "--baseline-runs", "3"]  # fmt: skip
    subprocess.run([*autoresearch, *run], cwd=workspace, check=True)
    return workspace


# ---------------------------------------------------------------------------------------------
# Summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-nanochat", type=Path, metavar="CORPUS", help="make a nanochat CPU run first")
    parser.add_argument("--workspace", type=Path, help="analyse this workspace's run instead")
    parser.add_argument("--tag", default="bench", help="the run to analyse")
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS)
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--after", type=float, default=AFTER, help="never abort before this fraction")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="early-abort-") as scratch:
        workspace = args.workspace
        if args.run_nanochat:
            workspace = run_nanochat(args.run_nanochat, args.experiments, args.budget, Path(scratch))
        if workspace is None:
            parser.error("give --run-nanochat CORPUS or --workspace DIR")
        target = load_target(workspace)
        if target.curve is None:
            parser.error(f"target {target.name} names no curve key: nothing to abort on")
        history = History(workspace / ".autoresearch" / "history.db")
        result = replay(history.experiments(args.tag), target, args.after)
    if args.json:
        print(json.dumps(result))
        return
    for outcome in result.pop("outcomes"):
        stopped = outcome["stopped_at"]
        where = "runs to the end" if stopped is None else f"stopped at {stopped:.0%}"
        print(f"[{outcome['number']:>3}] {outcome['status']:<8} {where}  {outcome['reason'] or ''}")
    print("---")
    for key, value in result.items():
        print(f"{key + ':':<28} {value}")


if __name__ == "__main__":
    main()
