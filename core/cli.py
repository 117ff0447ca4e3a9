"""The ``autoresearch`` command line: parse, call, print."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import click
from click.core import ParameterSource

from . import registry, statuses
from .agent import AgentOptions
from .history import LedgerError, export_tsv, read_only
from .target import ConfigError
from .workspace import WorkspaceError, check_ref_component
from .workspaces import ledger_path, open_history, resolve

USER_ERRORS = (ConfigError, WorkspaceError, LedgerError, OSError)


class Group(click.Group):
    """Adds plugins' commands on first use and turns user errors into one-line messages."""

    plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if not self.plugins_loaded:
            self.plugins_loaded = True
            registry.get_manager().hook.register_commands(cli=self)

    def list_commands(self, ctx):
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self._load_plugin_commands()
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `autoresearch log | head`: click's main ends quietly
            raise
        except USER_ERRORS as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=Group)
@click.version_option(package_name="autoresearch")
def cli():
    """Metric ratchets: an agent improves code against one metric; only improvements are kept."""


def scaffold_options(f):
    """Options a target may use when a workspace is created (``init``, ``run``, ``prepare``)."""
    f = click.option("--data", type=click.Path(exists=True, file_okay=False), help="Local data folder.")(f)
    f = click.option("--preset", help="Target preset (e.g. cpu, small-gpu, gpu).")(f)
    f = click.option("-o", "--option", "extra", multiple=True, metavar="KEY=VALUE", help="Target option.")(f)
    return f


def collect_options(extra: tuple[str, ...], **given) -> dict:
    options = {key: value for key, value in given.items() if value not in (None, ())}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        options[key] = value
    return options


def env_option(envvar: str, *names: str, **kwargs):
    """An option with an environment-variable fallback, named in --help."""
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


POSITIVE = click.FloatRange(min=0, min_open=True)
NOT_NEGATIVE = click.FloatRange(min=0)


# ---- listings


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _listing(classes: dict, as_json: bool) -> None:
    rows = [{"name": name, "description": cls.description} for name, cls in classes.items()]
    click.echo(json.dumps(rows, indent=2) if as_json else _table(rows, ["name", "description"]))


@cli.command()
def plugins():
    """List loaded plugins as JSON (name, hooks, version)."""
    click.echo(json.dumps(registry.describe(), indent=2))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def targets(as_json):
    """List the registered targets."""
    _listing(registry.targets(), as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def agents(as_json):
    """List the registered agents."""
    _listing(registry.agents(), as_json)


# ---- workspaces


@cli.command()
@click.argument("target")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--edit", multiple=True, metavar="GLOB", help="Files the agent may change (command target).")
@click.option("--protect", multiple=True, metavar="GLOB", help="Files that must never change.")
@click.option("--run", "run_command", metavar="CMD", help="Evaluator command (command target).")
@click.option("--metric", help="Key of the metric in the evaluator's summary (command target).")
@click.option("--direction", type=click.Choice(["lower", "higher"]), help="Which way is better.")
@click.option("--budget", type=POSITIVE, help="Seconds per experiment.")
@scaffold_options
def init(target, directory, edit, protect, run_command, metric, direction, budget, data, preset, extra):
    """Make DIRECTORY a workspace for TARGET: git init, the target's files, a first commit.

    DIRECTORY defaults to ./TARGET, or to the current repository for in-place targets (command).
    """
    from .config import target_class
    from .workspaces import scaffold

    cls = target_class(target)
    default = "." if cls.in_place else target
    options = collect_options(
        extra,
        edit=edit,
        protect=protect,
        run=run_command,
        metric=metric,
        direction=direction,
        budget=budget,
        data=data,
        preset=preset,
    )
    scaffold(target, Path(directory or default).resolve(), options, echo=click.echo)


@cli.command()
@click.argument("target", required=False)
@scaffold_options
def prepare(target, data, preset, extra):
    """Prepare TARGET's data once (inside a workspace: its target and settings)."""
    from .cache import CacheManifest
    from .config import load_target, target_class
    from .workspace import STATE_DIR, find_root

    root = find_root(Path.cwd())
    if root is not None and target is None:
        CacheManifest(root / STATE_DIR, load_target(root)).rebuild(root, echo=click.echo)
        return
    if target is None:
        raise click.UsageError("name a target, or run this inside a workspace")
    cls = target_class(target)
    options = collect_options(extra, data=data, preset=preset)
    cls.from_config({"target": target, **cls.default_config(options)}, None).prepare(None, echo=click.echo)


@cli.command()
@click.option("--budget", type=POSITIVE, help="Seconds (default: the target's budget).")
def check(budget):
    """Show the files each pattern resolves to, then run the evaluator once on the current tree
    and show what it reports (no git, no ledger)."""
    from .config import load_target, pattern_files
    from .measure import evaluate_tree
    from .workspace import Workspace

    root = resolve(None, None, {})
    target = load_target(root)
    tracked = Workspace(root).tracked_files()
    for kind, patterns in (("editable", target.editable), ("protected", target.protected)):
        for pattern, files in pattern_files(patterns, tracked).items():
            click.echo(f"{kind} {pattern}: {', '.join(files) or 'no tracked file'}")
    log = Path(tempfile.mkdtemp(prefix="autoresearch-check-")) / "check.log"
    click.echo(f"measuring {target.name} in {root} (log: {log})")
    started = time.monotonic()
    seed = 0 if target.takes_seed else None
    m, _ = evaluate_tree(target, root, log, budget or target.budget, seed)
    click.echo(f"status: {m.status}" + (f" ({m.reason})" if m.reason else ""))
    for key, value in m.extras.items():
        click.echo(f"  {key}: {value}")
    click.echo(f"{target.metric.name}: {m.metric} ({target.metric.direction} is better)")
    click.echo(f"took {time.monotonic() - started:.1f}s")
    if not m.ok:
        raise SystemExit(1)


def option_group(name: str, build, *options):
    """Click options that reach the command as one argument: ``name=build(**their values)``."""

    def decorate(f):
        def command(**kwargs):
            group = build(**{key: kwargs.pop(key) for key in keys})
            return f(**kwargs, **{name: group})

        command.__name__, command.__doc__ = f.__name__, f.__doc__
        command.__click_params__ = list(getattr(f, "__click_params__", []))
        first = len(command.__click_params__)
        for option in reversed(options):
            command = option(command)
        keys = [param.name for param in command.__click_params__[first:]]
        return command

    return decorate


def agent_options(retry_seconds: float, **given) -> AgentOptions:
    return AgentOptions(**given, extra={"retry_seconds": retry_seconds})


def check_tag(ctx, param, tag: str | None) -> str | None:
    if tag is not None:
        try:
            check_ref_component(tag)
        except WorkspaceError as error:
            raise click.BadParameter(str(error)) from None
    return tag


@cli.command()
@click.argument("target", required=False)
@click.option("--workspace", type=click.Path(file_okay=False), help="Workspace (default: ./TARGET).")
@click.option(
    "--tag",
    "--run",
    "tag",
    callback=check_tag,
    help="Run tag; the branch is autoresearch/TAG; an existing tag resumes.",
)
@click.option("--agent", "agent_name", help="Agent (default: anthropic with a key, else mutate).")
@option_group(  # the engine's RunOptions, less the tag
    "settings",
    dict,
    env_option(
        "AUTORESEARCH_BUDGET",
        "--budget",
        type=POSITIVE,
        help="Seconds per experiment (overrides the target).",
    ),
    env_option(
        "AUTORESEARCH_MAX_EXPERIMENTS",
        "--max-experiments",
        type=click.IntRange(min=0),
        help="Stop after N experiments (this invocation; 0: the baseline only).",
    ),
    click.option("--max-hours", type=POSITIVE, help="Stop after H hours (this invocation)."),
    click.option("--max-cost", type=NOT_NEGATIVE, help="Stop before agent spending would exceed USD."),
    click.option(
        "--min-delta", type=NOT_NEGATIVE, default=0.0, show_default=True, help="Smallest gain kept."
    ),
    env_option(
        "AUTORESEARCH_ACCEPT",
        "--accept",
        type=click.Choice(["noise", "strict"]),
        default="noise",
        show_default=True,
        help="noise: keep only gains beyond the measured noise, confirming close calls; strict: any gain.",
    ),
    env_option(
        "AUTORESEARCH_BASELINE_RUNS",
        "--baseline-runs",
        type=click.IntRange(min=1),
        help="Baseline measurements for the noise estimate [3; strict: 1].",
    ),
    click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Base of harness-chosen seeds.",
    ),
    click.option(
        "--memory-limit", "memory_limit_mb", type=POSITIVE, help="MB of resident memory for the evaluator."
    ),
    click.option(
        "--log-limit",
        "log_limit_mb",
        type=POSITIVE,
        help="MB an evaluator may write to its log (a full disk is a crash).",
    ),
    click.option(
        "--no-network", is_flag=True, help="No network for the evaluator, even if the target needs it."
    ),
    click.option(
        "--early-abort/--no-early-abort",
        default=True,
        show_default=True,
        help="Stop a candidate whose progress curve falls clearly behind the incumbent's.",
    ),
    click.option(
        "--abort-after",
        type=click.FloatRange(0, 1),
        default=0.2,
        show_default=True,
        help="Never abort a candidate before this share of the budget.",
    ),
    click.option(
        "--remeasure-every",
        type=click.IntRange(min=0),
        default=10,
        show_default=True,
        help="Noise-aware: re-measure an incumbent not measured for N experiments (drift; 0: off).",
    ),
    click.option(
        "--slots",
        type=click.IntRange(min=1),
        help="Measurements at once [1; with --devices: one per device].",
    ),
    click.option(
        "--devices", metavar="0,1|cuda:0,...", help="The slots' GPUs (CUDA_VISIBLE_DEVICES), in order."
    ),
    click.option(
        "--ahead",
        type=click.IntRange(min=0),
        help="Proposals drafted while slots measure [the slots; one slot: 0].",
    ),
    click.option(
        "--stale",
        type=click.Choice(["revalidate", "discard"]),
        default="revalidate",
        show_default=True,
        help="A winner whose parent was superseded meanwhile: measure it again on the incumbent, or drop it.",
    ),
)
@option_group(
    "agent_options",
    agent_options,
    click.option("--model", help="Model for LLM agents."),
    click.option("--base-url", help="API base URL for LLM agents."),
    click.option(
        "--agent-command", "command", help="Command for the command agent ({brief_file} is replaced)."
    ),
    click.option(
        "--agent-timeout",
        "timeout",
        type=POSITIVE,
        default=1800,
        show_default=True,
        help="Seconds per proposal (command agent) or per API request (LLM agents).",
    ),
    click.option(
        "--api-retry-seconds",
        "retry_seconds",
        type=NOT_NEGATIVE,
        default=900,
        show_default=True,
        help="How long LLM agents retry rate limits, overloads and dropped connections.",
    ),
    click.option(
        "--max-turns",
        type=click.IntRange(min=1),
        default=30,
        show_default=True,
        help="Tool turns per proposal.",
    ),
)
@scaffold_options
def run(target, workspace, tag, agent_name, settings, agent_options, data, preset, extra):
    """Run the ratchet on TARGET (or the current workspace) until a limit or Ctrl-C."""
    from .agents import default_agent_name
    from .config import load_target
    from .display import Display
    from .engine import Engine, RunOptions, default_tag
    from .pricing import DEFAULT_MAX_COST_USD
    from .workspace import Workspace

    root = resolve(target, workspace, collect_options(extra, data=data, preset=preset), echo=click.echo)
    announcement = None
    if agent_name is None:
        agent_name, announcement = default_agent_name(os.environ)
        if agent_name == "anthropic" and settings["max_cost"] is None:
            settings["max_cost"] = DEFAULT_MAX_COST_USD
    agent = _agent_class(agent_name)(agent_options)
    settings["baseline_runs"] = settings["baseline_runs"] or (3 if settings["accept"] == "noise" else 1)
    options = RunOptions(tag=tag or default_tag(), **settings)
    history = open_history(root)
    engine = Engine(
        Workspace(root),
        load_target(root),
        agent,
        history,
        options,
        observer=functools.partial(registry.experiment_finished, workspace=root),
    )
    click.echo(announcement or agent.announce(), err=True)
    try:
        with Display() as display:
            engine.display = display
            summary = engine.run()
    except KeyboardInterrupt:  # before the engine took over the signal: nothing was in flight
        click.echo("interrupted", err=True)
        return
    if summary.error:
        raise SystemExit(1)


PLACE_KEYS = ("slot", "host")  # where it was measured, shown for runs with several slots


def _parallel(run: dict) -> bool:
    return ((run["options"] or {}).get("slots") or 1) > 1


def _agent_class(name: str):
    known = registry.agents()
    if name not in known:
        raise ConfigError(f"unknown agent {name!r}; known agents: {', '.join(known)}")
    return known[name]


# ---- reading the ledger


def _open_run(run_tag: str | None):
    root = resolve(None, None, {})
    history = open_history(root)
    run = history.run(run_tag) if run_tag else history.latest_run()
    if run is None:
        raise click.ClickException(
            f"no run {run_tag!r} in this workspace"
            if run_tag
            else "no run yet; start one with 'autoresearch run'"
        )
    return root, history, run


LOG_KEYS = (
    "number",
    "status",
    "reason",
    "metric",
    "description",
    "commit",
    "agent",
    "model",
    "extras",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)
LOG_COLUMNS = ["#", "status", "metric", "cost", "commit", "description"]


def _log_line(row: dict) -> dict:
    reason = row["reason"] if row["reason"] and row["status"] not in statuses.INCUMBENT else ""
    return {
        "#": row["number"],
        "status": row["status"],
        "metric": "" if row["metric"] is None else f"{row['metric']:.6g}",
        "cost": "" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}",
        "commit": (row["commit"] or "")[:7],
        "slot": "" if row["slot"] is None else f"{row['slot']}@{row['host']}",
        "description": ((row["description"] or "") + (f" ({reason})" if reason else ""))[:100],
    }


@cli.command()
@click.option("--run", "--tag", "run_tag", help="Run tag (default: the latest run).")
@click.option(
    "--status",
    type=click.Choice(statuses.ALL),
    help="Only this status.",
)
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Only the last N experiments.")
@click.option("-f", "--follow", is_flag=True, help="Print new experiments as they land, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --follow: one object per line).")
def log(run_tag, status, limit, follow, as_json):
    """Show the experiments of a run, baseline first."""
    _, history, run = _open_run(run_tag)
    rows = history.experiments(run["tag"], status)[-limit if limit else None :]
    keys, columns = LOG_KEYS, LOG_COLUMNS
    if _parallel(run):  # where each was measured
        keys, columns = LOG_KEYS + PLACE_KEYS, [*LOG_COLUMNS[:-1], "slot", LOG_COLUMNS[-1]]
    if as_json and not follow:
        click.echo(json.dumps([{key: row[key] for key in keys} for row in rows], indent=2))
        return
    if as_json:
        for row in rows:
            click.echo(json.dumps({key: row[key] for key in keys}))
    else:
        click.echo(f"run {run['tag']} ({run['target']}, agent {run['agent']})")
        click.echo(_table([_log_line(row) for row in rows], columns))
    if not follow:
        click.echo(f"total cost: ${history.total_cost(run['tag']):.4f}")
        return
    last_id = max((row["id"] for row in history.experiments(run["tag"])), default=0)
    try:
        while True:
            time.sleep(0.5)
            for row in history.experiments(run["tag"], status, after_id=last_id):
                last_id = max(last_id, row["id"])
                if as_json:
                    click.echo(json.dumps({key: row[key] for key in keys}))
                else:
                    click.echo(_table([_log_line(row)], columns).splitlines()[1])
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs(as_json):
    """List the runs of this workspace, with each invocation's agent."""
    root = resolve(None, None, {})
    history = open_history(root)
    rows = history.runs()
    for row in rows:
        row["invocations"] = history.invocations(row["tag"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [
        {
            "tag": row["tag"],
            "target": row["target"],
            "agents": ", ".join(dict.fromkeys(i["agent"] for i in row["invocations"])) or row["agent"],
            "experiments": row["experiments"],
            "kept": row["kept"] or 0,
            "invocations": len(row["invocations"]),
            "started": (row["started_at"] or "")[:16],
            "ended": (row["ended_at"] or "")[:16],
        }
        for row in rows
    ]
    click.echo(_table(table, list(table[0])) if table else "no run yet; start one with 'autoresearch run'")


@cli.command()
@click.argument("number", type=int)
@click.option("--run", "--tag", "run_tag", help="Run tag (default: the latest run).")
def show(number, run_tag):
    """Show one experiment: description, metric, diff and log tail."""
    from .measure import log_tail

    root, history, run = _open_run(run_tag)
    row = history.experiment(run["tag"], number)
    if row is None:
        raise click.ClickException(f"no experiment {number} in run {run['tag']}; see 'autoresearch log'")
    click.echo(
        f"experiment {number} of run {run['tag']}: {row['status']}"
        + (f" ({row['reason']})" if row["reason"] else "")
    )
    click.echo(f"description: {row['description']}")
    click.echo(f"metric: {row['metric']}  samples: {row['samples']}  commit: {row['commit']}")
    if row["slot"] is not None and _parallel(run):
        click.echo(f"measured on: slot {row['slot']} of {row['host']}")
    for key, value in (row["extras"] or {}).items():
        click.echo(f"  {key}: {value}")
    if row["diff"]:
        click.echo("\n" + row["diff"])
    log_path = root / row["log_path"] if row["log_path"] else None  # relative to the workspace
    tail = log_tail(log_path, 20)
    if tail:
        click.echo(f"\nlog tail ({log_path}):\n{tail}")


@cli.command()
@click.option("--run", "--tag", "run_tag", help="Run tag (default: the latest run).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def best(run_tag, as_json):
    """Show the incumbent: the best kept experiment."""
    _, history, run = _open_run(run_tag)
    row = history.incumbent(run["tag"])
    if row is None:
        raise click.ClickException("no measured baseline yet")
    if as_json:
        click.echo(json.dumps({key: row[key] for key in LOG_KEYS}, indent=2))
    else:
        click.echo(
            f"{row['metric']:.6g}  experiment {row['number']}  {(row['commit'] or '')[:7]}  "
            f"{row['description']}"
        )


@cli.command()
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sql(query, as_json):
    """Run a read-only SQL query against the ledger."""
    root = resolve(None, None, {})
    open_history(root).close()  # create and migrate first
    conn = read_only(ledger_path(root))
    try:
        cursor = conn.execute(query)
        rows = [dict(row) for row in cursor]
    except sqlite3.Error as error:
        denied = " (this command only reads: ATTACH and VACUUM INTO are refused)" * ("authoriz" in str(error))
        raise click.ClickException(f"SQL error: {error}{denied}") from None
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif cursor.description:  # the header even when no row matched
        click.echo(_table(rows, [column[0] for column in cursor.description]))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["tsv"]), default="tsv", show_default=True)
@click.option("--run", "--tag", "run_tag", help="Run tag (default: the latest run).")
def export(fmt, run_tag):
    """Export a run in the original results.tsv layout to stdout."""
    from .config import load_target

    root, history, run = _open_run(run_tag)
    click.echo(export_tsv(history.experiments(run["tag"]), load_target(root).metric.name), nl=False)


# ---- views (they read the ledger only, during a run and after it)


def _run_view(run_tag: str | None):
    from .config import load_target
    from .views.run import load

    root, history, run = _open_run(run_tag)
    metric = load_target(root).metric
    return root, load(history, run["tag"], metric.name, metric.direction)


@cli.command()
@click.option("--run", "run_tag", help="Run tag (default: the latest run).")
@click.option("--out", type=click.Path(dir_okay=False), default="progress.png", show_default=True)
@click.option(
    "--x",
    "x_axis",
    type=click.Choice(["number", "time"]),
    default="number",
    show_default=True,
    help="x axis: experiment number, or wall-clock hours since the run started.",
)
def plot(run_tag, out, x_axis):
    """Draw the run's progress chart (the original's progress.png); needs matplotlib."""
    from .views import chart, plot

    _, view = _run_view(run_tag)
    drawn = chart.build(view, x_axis)
    try:
        plot.save(drawn, Path(out))
    except plot.MissingMatplotlib as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {out}: {drawn.title}")


@cli.command()
@click.option("--run", "run_tag", help="Run tag (default: the latest run).")
@click.option("--out", type=click.Path(dir_okay=False), default="report.html", show_default=True)
def report(run_tag, out):
    """Write one self-contained HTML report of a run (no network needed to open it)."""
    from .views import report

    _, view = _run_view(run_tag)
    Path(out).write_text(report.render(view), encoding="utf-8")
    click.echo(f"wrote {out}: run {view.run['tag']}, {len(view.rows)} experiments")


@cli.command()
@click.option("--run", "run_tag", help="Run tag (default: the latest run, following new runs).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=0, show_default=True, help="Port (0: any free port).")
def dashboard(run_tag, host, port):
    """Serve a live, read-only dashboard of the run in the browser until Ctrl-C."""
    from .config import load_target
    from .views.dashboard import Dashboard, Feed, is_local

    explicit = click.get_current_context().get_parameter_source("host") is ParameterSource.COMMANDLINE
    if not is_local(host) and not explicit:
        raise click.ClickException(f"{host} is not a local address; give --host {host} to serve it there")
    root = resolve(None, None, {})
    open_history(root).close()  # create and migrate first; the dashboard only reads
    metric = load_target(root).metric
    server = Dashboard(Feed(ledger_path(root), run_tag, metric.name, metric.direction), host, port).start()
    if not is_local(host):
        click.echo(f"warning: serving the ledger on {host}, without authentication", err=True)
    click.echo(f"dashboard: {server.url} (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


@cli.command()
@click.option("--run", "run_tag", help="Run tag (default: the latest run).")
@click.option("--branch", required=True, help="Name of the new branch (must not exist).")
@click.option("--squash", is_flag=True, help="One commit for all kept changes.")
def finalize(run_tag, branch, squash):
    """Put the run's kept changes on a new branch from its starting commit (nothing else changes)."""
    from .finalize import finalize
    from .workspace import Workspace

    root, view = _run_view(run_tag)
    made = finalize(Workspace(root), view, branch, squash)
    click.echo(f"branch {branch}: {len(made)} commit(s) on {view.baseline['commit'][:10]}")
    for sha, subject in made:
        click.echo(f"  {sha[:10]} {subject}")


@cli.command()
@click.option("--run", "--tag", "run_tag", help="Run tag (default: the latest run).")
def brief(run_tag):
    """Print the brief the agent would get for the next experiment."""
    from .config import load_target
    from .engine import Engine, RunOptions
    from .workspace import Workspace

    root, history, run = _open_run(run_tag)
    engine = Engine(
        Workspace(root),
        load_target(root),
        _agent_class("mutate")(),
        history,
        RunOptions(tag=run["tag"], budget=run["options"].get("budget")),
    )
    click.echo(engine.preview_brief(history.next_number(run["tag"])))


if __name__ == "__main__":
    cli()
