"""False keeps: the strict and the noise-aware acceptance policies on a synthetic target.

A simulated run measures the baseline BASELINE_RUNS times, then judges a stream of proposals
whose true effects are known: most change nothing, some improve the metric by 2σ, some worsen it
by 2σ. Every measurement is the true value plus Gaussian noise of σ. The run does the engine's
bookkeeping: σ is estimated before each decision by pooling every group of repeated samples so
far (the baseline's, each candidate's, each decision's incumbent re-measurements); a kept change
becomes the incumbent with its true value (a kept zero-effect change leaves it where it was) and
its samples; a discarded change's incumbent re-measurements join the incumbent's samples; the
largest gain kept so far feeds the too-good guard. Both policies see the same proposal streams;
each has its own noise draws.

Reported per policy: the false-keep rate (share of zero-effect proposals kept), the true-keep
rate (share of 2σ improvements kept) and the measurements per proposal (baseline runs excluded).

    python bench/false_keeps.py [--json] [--streams N] [--proposals N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import numpy as np

from autoresearch.accept import NoiseAwarePolicy, Policy, StrictPolicy, estimate_noise
from autoresearch.target import Metric

# ---------------------------------------------------------------------------------------------
# Hyperparameters

SIGMA = 1.0  # true noise of one measurement (the metric's unit)
BASELINE_RUNS = 5  # baseline measurements that estimate σ at the start of each run
STREAMS = 400  # simulated runs
PROPOSALS = 50  # proposals per run
EFFECTS = {  # true improvement in σ (positive is better) -> share of proposals
    0.0: 0.6,
    2.0: 0.2,
    -2.0: 0.2,
}
SEED = 0

METRIC = Metric("loss", "lower")

# ---------------------------------------------------------------------------------------------
# One simulated run


def run_stream(policy: Policy, effects: list[float], rng: np.random.Generator) -> tuple[list, int]:
    """Judge ``effects`` in order; return (effect, kept) per proposal and the measurements spent."""

    def measure(true_value: float) -> float:
        return true_value + rng.normal(0.0, SIGMA)

    true_incumbent = 0.0
    incumbent = [measure(true_incumbent) for _ in range(BASELINE_RUNS)]
    repeats = [incumbent]  # groups of samples of one commit, pooled into σ
    largest_gain = None
    outcomes, measurements = [], 0
    for effect in effects:
        true_candidate = true_incumbent - effect * SIGMA  # lower is better
        decision = policy.decide(
            measure(true_candidate),
            incumbent,
            partial(measure, true_candidate),
            partial(measure, true_incumbent),
            noise=estimate_noise(*repeats),
            largest_gain=largest_gain,
        )
        measurements += 1 + decision.extra_runs
        outcomes.append((effect, decision.keep))
        repeats += [decision.candidate, decision.incumbent]
        if decision.keep:
            true_incumbent, incumbent = true_candidate, decision.candidate
            largest_gain = max(largest_gain or 0.0, decision.gain)
        else:
            incumbent = incumbent + decision.incumbent
    return outcomes, measurements


# ---------------------------------------------------------------------------------------------
# Both policies on the same streams


def benchmark(streams: int, proposals: int, seed: int) -> dict:
    policies = {"strict": StrictPolicy(METRIC), "noise_aware": NoiseAwarePolicy(METRIC)}
    results = {name: {"outcomes": [], "measurements": 0} for name in policies}
    for stream in range(streams):
        draw = np.random.default_rng([seed, stream])
        effects = draw.choice(list(EFFECTS), size=proposals, p=list(EFFECTS.values())).tolist()
        for index, (name, policy) in enumerate(policies.items()):
            outcomes, measurements = run_stream(
                policy, effects, np.random.default_rng([seed, stream, index + 1])
            )
            results[name]["outcomes"] += outcomes
            results[name]["measurements"] += measurements
    return {name: summarize(**result) for name, result in results.items()}


def summarize(outcomes: list, measurements: int) -> dict:
    def keep_rate(effect: float) -> float:
        return statistics.fmean(kept for e, kept in outcomes if e == effect)

    return {
        "false_keep_rate": round(keep_rate(0.0), 4),
        "true_keep_rate": round(keep_rate(2.0), 4),
        "measurements_per_proposal": round(measurements / len(outcomes), 3),
    }


# ---------------------------------------------------------------------------------------------
# Summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--streams", type=int, default=STREAMS, help="simulated runs")
    parser.add_argument("--proposals", type=int, default=PROPOSALS, help="proposals per run")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    start = time.time()
    results = benchmark(args.streams, args.proposals, args.seed)
    if args.json:
        print(json.dumps(results))
        return
    lines = {"proposals": f"{args.streams} runs x {args.proposals}", "baseline_runs": BASELINE_RUNS}
    for name, result in results.items():
        lines.update({f"{name}.{key}": value for key, value in result.items()})
    lines["seconds"] = f"{time.time() - start:.1f}"
    print("---")
    for key, value in lines.items():
        print(f"{key + ':':<38} {value}")


if __name__ == "__main__":
    main()
