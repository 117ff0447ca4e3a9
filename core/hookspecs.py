"""Every pluggy hook that autoresearch calls, with its contract."""

import pluggy

hookspec = pluggy.HookspecMarker("autoresearch")
hookimpl = pluggy.HookimplMarker("autoresearch")


@hookspec
def register_targets(register):
    """Register target classes: call ``register(TargetSubclass)`` once per target.

    A target supplies the editable and protected files, the fixed-budget evaluator and the
    scalar metric that a run ratchets on.
    """


@hookspec
def register_agents(register):
    """Register agent classes: call ``register(AgentSubclass)`` once per agent.

    An agent proposes one change to the editable files per experiment.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``autoresearch`` click group, e.g. ``@cli.command()``."""


@hookspec
def experiment_finished(run, experiment, workspace):
    """Observe a finished experiment (notifications, exporters).

    ``run`` is the ledger row of the run, ``experiment`` the ledger row just written (dicts),
    ``workspace`` the workspace's root folder (a ``Path``; its log paths are relative to it).
    Called after the row is committed; an observer cannot change the decision.
    """
