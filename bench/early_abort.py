"""Early abort, measured: where the rule would have stopped candidates that ran to the end.

A run made with ``--no-early-abort`` still records every measurement's progress curve. This
benchmark replays the run's ledger in order, rebuilding the evidence the engine had before each
experiment (the incumbent's curves, the spread of repeated curves), and feeds each candidate's
first curve to the early-abort rule as if it arrived live. It reports:

- compute saved: the share of the discarded candidates' training that would not have run
  (1 − the fraction where the rule stops, summed over discarded candidates, over their count);
- keeps aborted: the share of kept candidates the rule would have stopped (each one a gain lost),
  and among them the clear keeps: those whose one sample cleared the noise-aware policy's bar (the
  strict policy this run uses also keeps gains within the noise, which a curve may rightly show
  as no gain).
- no-effect runs stopped: the incumbent's re-measurements (made by the noise-aware policy), each
  judged as a candidate against the incumbent's curves before it, and apart those that ended
  well (not worse than the incumbent's mean they were judged against). Each is a change with no
  effect; one that ended well and was stopped is the rule's error that keeps would suffer, with
  more trials than a run has keeps (one that ended worse, slowed by the machine, was foreseen).
  With ``--no-op`` the candidates themselves change nothing (each adds a comment), so every
  measurement after the baseline is such a trial.
- both for the rule as the engine has it and for the rule at equal time only (the rule without a
  work count), side by side.

Goals: ≥ 30% of the compute of discarded candidates saved, ≤ 2% of keeps aborted.

With ``--run-nanochat CORPUS``, it first makes that run: a fresh ``nanochat_bpb`` workspace on the
CPU preset with the corpus CORPUS (``stdlib``, the offline corpus, or a folder of texts),
``mutate`` proposing ``--experiments`` candidates under a ``--budget`` of a few seconds, all run
to the end (one measurement each with ``--accept strict``, the default here; ``--accept noise``
re-measures as the engine does by default; three baseline runs). Or analyse an existing run
with ``--workspace DIR --tag TAG`` (any target with a curve key), under the rule's defaults or
other settings (``--until``, ``--z``, ``--z-work``, ``--catch-up``), on all its candidates or on
a hold-out part (``--numbers``), so a change of the rule is judged on candidates it was not
tuned on.

    python bench/early_abort.py --run-nanochat stdlib|DIR [--experiments 24] [--budget 20] [--seed S]
                                [--accept strict|noise] [--no-op] [--keep WS]
    python bench/early_abort.py --workspace DIR --tag TAG [--after 0.2] [--until 0.9] [--z Z]
                                [--z-work Z] [--catch-up C] [--numbers A-B] [--no-op] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

from autoresearch.abort import EarlyAbort
from autoresearch.accept import Evidence, NoiseAwarePolicy
from autoresearch.config import load_target
from autoresearch.history import History

# ---------------------------------------------------------------------------------------------
# Hyperparameters

EXPERIMENTS = 24  # mutate candidates, each run to the end
BUDGET = 20  # seconds of training per measurement (tiny: the bench must finish in minutes)
AFTER = 0.2  # the rule's earliest fraction (the engine's default)
NO_OP = 'echo "# no-op $(date +%s%N)" >> train.py && echo "a comment (no effect)"'

# ---------------------------------------------------------------------------------------------
# Replaying a run


def where_stopped(rule: EarlyAbort, curve: list) -> float | None:
    """The fraction at which ``rule`` stops ``curve``, or None when it runs to the end."""
    for frac, value, *work in curve:
        if rule({"frac": frac, rule.key.name: value} | ({rule.work: work[0]} if rule.work and work else {})):
            return frac
    return None


def replay(
    rows: list[dict],
    target,
    after: float,
    numbers: range | None = None,
    work: str | None = None,
    no_op: bool = False,
    **settings,
) -> dict:
    """Every candidate's would-be abort point, with the evidence of the rows before it.

    ``numbers``: judge only these experiments (a hold-out part of the run); ``work``: the progress
    key of the work done, to judge at equal work too (None: at equal time only); ``no_op``: the
    candidates changed nothing, so each is a no-effect run too; ``settings``: the rule's (``z``,
    ``z_work``, ``catch_up``) when not its defaults.
    """
    evidence = Evidence(relative=target.metric.noise == "relative")
    outcomes, repeats = [], []
    for row in rows:
        curves = row["curves"] or {}
        judged = row["status"] in ("keep", "discard") and (numbers is None or row["number"] in numbers)
        # each curve meets the rule as it stood before this experiment (its incumbent, its spread)
        rule = partial(EarlyAbort, target.curve, evidence.recent_curves(), evidence.curve_groups, after=after,
                       work=work, **settings)  # fmt: skip
        well = partial(ended_well, target.metric, evidence.recent_incumbent())
        if judged:  # the incumbent measured again: a change with no effect
            samples = row["incumbent_samples"] or []
            for curve, sample in zip(curves.get("incumbent_samples", []), samples, strict=True):
                if curve:
                    repeats.append((where_stopped(rule(), curve), well(sample)))
        first = (curves.get("samples") or [None])[0]
        if judged and first:
            judge = rule()
            stopped = where_stopped(judge, first)
            if no_op:  # the candidate changed nothing: a no-effect run too
                repeats.append((stopped, well(row["samples"][0])))
            clear = row["status"] == "keep" and clears_the_bar(row, evidence, target.metric)
            outcomes.append({"number": row["number"], "status": row["status"], "stopped_at": stopped,
                             "metric": row["metric"], "throughput": row["throughput"],
                             "clear": clear,
                             "reason": judge.reason})  # fmt: skip
        if row["status"] in ("baseline", "keep", "discard"):
            evidence.add(row)
    baseline = next((row["throughput"] for row in rows if row["status"] == "baseline"), None)
    return summarize(outcomes) | {
        "no_effect_runs": len(repeats),
        "no_effect_runs_stopped": sum(stopped is not None for stopped, _ in repeats),
        "no_effect_runs_ending_well": sum(well for _, well in repeats),
        "no_effect_runs_ending_well_stopped": sum(well and stopped is not None for stopped, well in repeats),
        "throughput_baseline": baseline and round(baseline),
    }


def ended_well(metric, incumbent: list[float], sample: float) -> bool:
    """Whether a no-effect run's sample is not worse than the incumbent's mean it was judged against."""
    return metric.gain(sample, statistics.fmean(incumbent or [math.nan])) >= 0


def clears_the_bar(row: dict, evidence: Evidence, metric) -> bool:
    """Whether the noise-aware policy's bar keeps a candidate's one sample at its first look (no
    re-measurement, no too-good check): a clear keep, not one of the strict policy's keeps of a
    gain within the noise."""
    incumbent, sigma = evidence.recent_incumbent(), evidence.noise
    if not incumbent or sigma is None:
        return False
    no_more = lambda: None  # noqa: E731 - a re-measurement that fails ends the decision
    return NoiseAwarePolicy(metric).decide(row["samples"][0], incumbent, no_more, no_more, noise=sigma).keep


def summarize(outcomes: list[dict]) -> dict:
    # the evaluator's speed shows how busy the machine was (a slower run is behind at equal time)
    speeds = sorted(round(o["throughput"]) for o in outcomes if o["throughput"] is not None)
    spread = [speeds[0], statistics.median(speeds), speeds[-1]] if speeds else None  # min, median, max
    discarded = [o for o in outcomes if o["status"] == "discard"]
    kept = [o for o in outcomes if o["status"] == "keep"]
    saved = sum(1 - o["stopped_at"] for o in discarded if o["stopped_at"] is not None)
    keeps_aborted = sum(o["stopped_at"] is not None for o in kept)
    clear = [o for o in kept if o["clear"]]
    return {
        "candidates": len(outcomes),
        "discarded": len(discarded),
        "kept": len(kept),
        "discards_aborted": sum(o["stopped_at"] is not None for o in discarded),
        "compute_saved_of_discards": round(saved / len(discarded), 3) if discarded else None,
        "keeps_aborted": round(keeps_aborted / len(kept), 3) if kept else None,
        "clear_keeps": len(clear),
        "clear_keeps_aborted": sum(o["stopped_at"] is not None for o in clear),
        "throughput_candidates": spread,
        "outcomes": outcomes,
    }


# ---------------------------------------------------------------------------------------------
# Making a nanochat run with every candidate run to the end


def run_nanochat(
    corpus: str,
    experiments: int,
    budget: float,
    workspace: Path,
    seed: int = 0,
    accept: str = "strict",
    no_op: bool = False,
) -> None:
    autoresearch = [sys.executable, "-m", "autoresearch.cli"]
    source = ["-o", f"corpus={corpus}"] if corpus in ("stdlib", "climbmix") else ["--data", corpus]
    # a small evaluation keeps it short (the curves, not val_bpb's precision, are measured here)
    init = ["init", "nanochat_bpb", str(workspace), "--preset", "cpu", *source, "-o", "EVAL_TOKENS=8192"]
    subprocess.run([*autoresearch, *init], check=True)
    # generous allowances: a busy machine must not turn the bench into timeouts
    config = workspace / "autoresearch.yaml"
    text = re.sub(r"^(startup|eval)_seconds: .*$", r"\1_seconds: 600", config.read_text(), flags=re.M)
    config.write_text(text)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", *identity, "commit", "-qam", "bench: allowances"], cwd=workspace, check=True)
    # strict: one measurement per candidate keeps the bench short (where the rule stops a curve
    # does not depend on the decision); noise: the engine's default, whose re-measurements of the
    # incumbent refresh the spread of its curves. Three baseline runs give the first spread.
    run = ["run", "--agent", "mutate", "--tag", "bench", "--budget", str(budget), "--no-early-abort",
           "--max-experiments", str(experiments), "--accept", accept, "--baseline-runs", "3",
           "--seed", str(seed)]  # fmt: skip
    if no_op:  # each candidate adds a comment: a change with no effect, measured as one
        run += ["--agent", "command", "--agent-command", NO_OP]
    subprocess.run([*autoresearch, *run], cwd=workspace, check=True)


# ---------------------------------------------------------------------------------------------
# Summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-nanochat", metavar="CORPUS", help="make a nanochat CPU run first (stdlib|DIR)")
    parser.add_argument("--keep", type=Path, metavar="WS", help="make that run's workspace here, and keep it")
    parser.add_argument("--workspace", type=Path, help="analyse this workspace's run instead")
    parser.add_argument("--tag", default="bench", help="the run to analyse")
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS)
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--seed", type=int, default=0, help="the run's base seed (other candidates)")
    parser.add_argument("--accept", choices=("strict", "noise"), default="strict", help="the run's policy")
    parser.add_argument("--no-op", action="store_true",
                        help="candidates change nothing (a comment): each is a no-effect run")  # fmt: skip
    parser.add_argument("--after", type=float, default=AFTER, help="never abort before this fraction")
    parser.add_argument("--until", type=float, help="never abort after this fraction (default: the engine's)")
    parser.add_argument("--z", type=float, help="the rule's noise margin in σ (default: the engine's)")
    parser.add_argument("--z-work", type=float, help="the margin in σ at equal work (default: the engine's)")
    parser.add_argument("--catch-up", type=float, help="the rule's catch-up share (default: the engine's)")
    parser.add_argument("--numbers", metavar="A-B", help="judge only experiments A to B (a hold-out part)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="early-abort-") as scratch:
        workspace = args.workspace
        if args.run_nanochat:
            workspace = args.keep or Path(scratch) / "ws"
            run_nanochat(args.run_nanochat, args.experiments, args.budget, workspace, args.seed, args.accept,
                         args.no_op)  # fmt: skip
        if workspace is None:
            parser.error("give --run-nanochat CORPUS or --workspace DIR")
        target = load_target(workspace)
        if target.curve is None:
            parser.error(f"target {target.name} names no curve key: nothing to abort on")
        history = History(workspace / ".autoresearch" / "history.db")
        settings = {"until": args.until, "z": args.z, "z_work": args.z_work, "catch_up": args.catch_up}
        settings = {k: v for k, v in settings.items() if v is not None}
        numbers = None
        if args.numbers:
            first, _, last = args.numbers.partition("-")
            numbers = range(int(first), int(last or first) + 1)
        rows = history.experiments(args.tag)
        judge = partial(replay, rows, target, args.after, numbers, no_op=args.no_op, **settings)
        result = judge(work=target.curve_work)
        if target.curve_work:  # side by side: the rule at equal time only, as without a work count
            result["at_equal_time_only"] = judge(work=None)
    if args.json:
        print(json.dumps(result))
        return
    time_only = result.pop("at_equal_time_only", None)
    for i, outcome in enumerate(result.pop("outcomes")):
        measured = f"{outcome['metric']:.4g} at {outcome['throughput'] or 0:.4g}/s"
        where = [o["stopped_at"] for o in ([outcome] + ([time_only["outcomes"][i]] if time_only else []))]
        where = " | ".join("to the end" if w is None else f"stopped at {w:.0%}" for w in where)
        reason = outcome["reason"] or ""
        print(f"[{outcome['number']:>3}] {outcome['status']:<8} {measured}  {where}  {reason}")
    print("---")
    if time_only:
        print(f"{'':<28} {'equal time and ' + target.curve_work:<24} equal time only")
    for key, value in result.items():
        print(f"{key + ':':<28} {value!s:<24} {time_only[key] if time_only else ''}")


if __name__ == "__main__":
    main()
