"""Finding, creating and opening workspaces: the glue between the CLI and the engine."""

from __future__ import annotations

from pathlib import Path

from .config import check_editable, read_config, target_class, write_config
from .history import History
from .target import ConfigError
from .workspace import CONFIG_FILE, Workspace, WorkspaceError, find_root

LEDGER = "history.db"


def scaffold(target_name: str, root: Path, options: dict, echo=print) -> Path:
    """Make ``root`` a workspace for the target: git init, the target's files, a first commit."""
    cls = target_class(target_name)
    ws = Workspace(root) if cls.in_place else Workspace.create(root)
    if (ws.root / CONFIG_FILE).exists():
        raise WorkspaceError(f"{ws.root} is already a workspace ({CONFIG_FILE} exists)")
    dirty = ws.dirty_paths()
    if dirty:
        raise WorkspaceError(
            f"tracked files have uncommitted changes ({', '.join(dirty[:3])}); commit or stash them first"
        )
    before = set(ws.repo.untracked_files)
    ws.ensure_state_dir()
    config = {"target": target_name, **cls.scaffold(ws.root, options)}
    write_config(ws.root, config)
    new_files = sorted(set(ws.repo.untracked_files) - before)
    try:
        target = cls.from_config(config, ws.root)
        check_editable(target, ws.tracked_files() + new_files)
    except ConfigError:
        (ws.root / CONFIG_FILE).unlink()
        raise
    ws.commit_files(f"autoresearch: set up the {target_name} workspace", new_files)
    echo(f"workspace {ws.root} ready for target {target_name} ({len(new_files)} files committed)")
    return ws.root


def resolve(target_name: str | None, workspace: str | None, options: dict, echo=print) -> Path:
    """The workspace a command works on, scaffolding ``./TARGET`` (or ``--workspace``) if needed."""
    if workspace is None and target_name is None:
        root = find_root(Path.cwd())
        if root is None:
            raise WorkspaceError(
                f"not inside a workspace (no {CONFIG_FILE}); name a target, e.g. 'autoresearch run "
                "nanochat_bpb', or create one with 'autoresearch init'"
            )
        return root
    if workspace is None:
        here = find_root(Path.cwd())
        if here is not None and read_config(here).get("target") == target_name:
            return here
    path = Path(workspace or target_name).resolve()
    root = find_root(path) if path.exists() else None
    if root is not None and root == path:
        existing = read_config(root).get("target")
        if target_name and existing != target_name:
            raise WorkspaceError(f"{root} is a workspace for target {existing!r}, not {target_name!r}")
        return root
    if target_name is None:
        raise WorkspaceError(f"{path} is not a workspace; name a target to create one there")
    if target_class(target_name).in_place:
        raise WorkspaceError(
            f"target {target_name!r} works in an existing repository: run 'autoresearch init "
            f"{target_name} ...' there first (see 'autoresearch init --help')"
        )
    return scaffold(target_name, path, options, echo)


def ledger_path(root: Path) -> Path:
    return root / ".autoresearch" / LEDGER


def open_history(root: Path) -> History:
    return History(ledger_path(root))
