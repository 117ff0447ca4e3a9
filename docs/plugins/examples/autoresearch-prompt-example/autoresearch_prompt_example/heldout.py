"""``autoresearch prompt-example heldout``: a run's baseline and best prompts on the held-out split.

The split never enters the workspace, so no agent has seen it: a prompt that scores well here
did not just learn train.jsonl by heart.
"""

from __future__ import annotations

import os

import click

from autoresearch.config import load_target
from autoresearch.workspace import Workspace
from autoresearch.workspaces import open_history, resolve

from . import DATA, KEY_ENV, PromptExample


@click.command()
@click.option("--run", "run_tag", help="Run tag (default: the latest run).")
def heldout(run_tag):
    """Score the run's baseline and best prompts on the held-out split the agent never saw."""
    import anthropic  # here, not at the top: every autoresearch command imports this module

    from .evaluate import accuracy, load, replies

    root = resolve(None, None, {})
    target = load_target(root)
    if not isinstance(target, PromptExample):
        raise click.ClickException(f"{root} is a workspace for target {target.name!r}, not prompt_example")
    if not os.environ.get(KEY_ENV):
        raise click.ClickException(f"{KEY_ENV} is not set: scoring calls the Anthropic API; export it first")
    history = open_history(root)
    run = history.run(run_tag) if run_tag else history.latest_run()
    if run is None:
        raise click.ClickException(f"no run {run_tag!r} here" if run_tag else "no run yet; start one first")
    baseline = history.experiments(run["tag"], "baseline")
    if not baseline:
        raise click.ClickException(f"run {run['tag']} has no measured baseline yet")
    best = history.incumbent(run["tag"])

    items = load(DATA / "heldout.jsonl")
    client = anthropic.Anthropic(base_url=target.base_url)
    repo = Workspace(root).repo
    click.echo(
        f"run {run['tag']}: the baseline and the best prompt (experiment {best['number']}) "
        f"on {len(items)} held-out messages"
    )
    scores = {}
    for name, row in (("baseline", baseline[0]), ("best", best)):
        template = (repo.commit(row["commit"]).tree / "prompt.txt").data_stream.read().decode()
        scores[f"{name}_accuracy"] = row["metric"]
        scores[f"{name}_heldout_accuracy"] = accuracy(replies(template, items, client, target.model), items)
    click.echo("---")
    for key, value in scores.items():
        click.echo(f"{key + ':':<27}{value:.4f}")
