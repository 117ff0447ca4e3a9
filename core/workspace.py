"""The git repository a run works in (GitPython): run branch, commits, resets, attempt refs, lock."""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path

import git
from wcmatch.glob import DOTGLOB, GLOBSTAR, globmatch

from .measure import pid_alive

STATE_DIR = ".autoresearch"
CONFIG_FILE = "autoresearch.yaml"
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "autoresearch",
    "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
    "GIT_COMMITTER_NAME": "autoresearch",
    "GIT_COMMITTER_EMAIL": "autoresearch@localhost",
}


class WorkspaceError(Exception):
    """A problem with the user's repository that the user must fix (one line, says how)."""


def find_root(start: Path) -> Path | None:
    """The top of the git repository holding ``start`` if it has an ``autoresearch.yaml``."""
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if repo.bare:
        return None
    top = Path(repo.working_tree_dir)
    return top if (top / CONFIG_FILE).exists() else None


def matches(path: str, patterns: list[str]) -> bool:
    """Whether a workspace-relative path matches any pattern: ``*`` stays inside one folder, ``**``
    crosses folders (``**/*.py`` includes top-level files); a pattern equal to the path matches too."""
    return any(path == pattern or globmatch(path, pattern, flags=GLOBSTAR | DOTGLOB) for pattern in patterns)


def check_ref_component(tag: str) -> None:
    """Refuse a run tag git cannot name a branch with (as ``git check-ref-format`` does), or a '/'."""
    try:
        git.Git().check_ref_format(f"refs/heads/autoresearch/{tag}")
    except git.GitCommandError:
        ok = False
    else:
        ok = "/" not in tag
    if not ok:
        raise WorkspaceError(
            f"{tag!r} cannot be a run tag: use letters, digits, '-', '_' and '.' (no spaces, '..', "
            "'~', '/' or a '.lock' ending)"
        )


def diff_sha(diff: str) -> str:
    return hashlib.sha256(diff.encode()).hexdigest()


class Workspace:
    """A git working tree; every write goes through here."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        try:
            self.repo = git.Repo(self.root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(
                f"{self.root} is not a git repository; run 'git init' there or use "
                "'autoresearch init TARGET DIR'"
            ) from None
        if self.repo.bare:
            raise WorkspaceError(
                f"{self.root} is a bare git repository (no working tree); clone it (git clone "
                f"{self.root} DIR) and work in the clone"
            )
        self.state_dir = self.root / STATE_DIR
        self._set_identity()

    @classmethod
    def create(cls, root: Path) -> Workspace:
        """Open ``root`` as a repo, running ``git init`` first where it is none."""
        root.mkdir(parents=True, exist_ok=True)
        try:
            git.Repo(root)
        except git.InvalidGitRepositoryError:
            git.Repo.init(root, initial_branch="main")
        return cls(root)

    def _set_identity(self) -> None:
        """Commit as the user where git knows them, else as ``autoresearch``."""
        reader = self.repo.config_reader()
        if not (reader.has_option("user", "name") and reader.has_option("user", "email")):
            self.repo.git.update_environment(**FALLBACK_IDENTITY)

    def ensure_state_dir(self) -> Path:
        """``.autoresearch/`` with a ``.gitignore`` of ``*``, so none of it is ever committed."""
        self.state_dir.mkdir(exist_ok=True)
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        return self.state_dir

    # ---- reading

    def head(self) -> str | None:
        try:
            return self.repo.head.commit.hexsha
        except ValueError:  # no commits yet
            return None

    def branch(self) -> str | None:
        return None if self.repo.head.is_detached else self.repo.active_branch.name

    def tracked_files(self) -> list[str]:
        return _paths(self.repo.git.ls_files("-z"))

    def dirty_paths(self) -> list[str]:
        """Tracked paths modified in the working tree or the index (untracked files ignored)."""
        if self.head() is None:
            return []
        out = self.repo.git.status("--porcelain", "--untracked-files=no", "-z")
        return sorted({entry[3:] for entry in out.split("\0") if entry})

    def diff(self) -> str:
        """The working tree's change to tracked files against HEAD."""
        return self.repo.git.diff("HEAD", "--no-color", "--no-ext-diff", "--binary")

    def changed_paths(self) -> list[str]:
        return _paths(self.repo.git.diff("HEAD", "--name-only", "-z"))

    def numstat(self) -> tuple[int, int, bool]:
        """Lines added and removed by the working tree's change, and whether a file is binary."""
        added = removed = 0
        binary = False
        for line in self.repo.git.diff("HEAD", "--numstat").splitlines():
            plus, minus, _ = line.split("\t", 2)
            if plus == "-":
                binary = True
                continue
            added, removed = added + int(plus), removed + int(minus)
        return added, removed, binary

    def tree(self, commit: str) -> str:
        return self.repo.commit(commit).tree.hexsha

    def tree_with(self, paths: list[str]) -> str:
        """The git tree HEAD would have with ``paths`` as they are now (a scratch index; HEAD untouched)."""
        with tempfile.TemporaryDirectory() as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.repo.git.read_tree("HEAD", env=env)
            self.repo.git.add("--", *paths, env=env)
            return self.repo.git.write_tree(env=env)

    def file_sha(self, path: str) -> str | None:
        full = self.root / path
        return hashlib.sha256(full.read_bytes()).hexdigest() if full.is_file() else None

    # ---- writing

    def commit_files(self, message: str, paths: list[str] | None = None) -> str:
        """Commit tracked changes (or exactly ``paths``, new ones included); returns the sha."""
        self.clear_stale_lock()
        if paths:
            self.repo.git.add("--", *paths)
        else:
            self.repo.git.add("-u")
        self.repo.git.commit("-m", message, "--no-verify", "--allow-empty")
        return self.head()

    def start_branch(self, name: str) -> bool:
        """Check out ``name``, creating it at HEAD if new. Returns True when it was created."""
        created = name not in self.repo.heads
        if created:
            self.repo.create_head(name)
        if self.branch() != name:
            self.repo.heads[name].checkout()
        return created

    def reset_to(self, commit: str) -> None:
        """Point the checked-out run branch and its tree at ``commit`` (untracked files stay)."""
        self.clear_stale_lock()
        self.repo.git.reset("--hard", commit)

    def keep_ref(self, ref: str, commit: str) -> None:
        self.repo.git.update_ref(ref, commit)

    def clear_stale_lock(self, force: bool = False) -> None:
        """Remove an ``index.lock`` left by a git that was killed with us.

        ``force`` when resuming after a kill: the dead harness was the only git user of the run.
        """
        lock = Path(self.repo.git_dir) / "index.lock"
        if lock.exists() and (force or time.time() - lock.stat().st_mtime > 10):
            lock.unlink(missing_ok=True)


def _paths(nul_separated: str) -> list[str]:
    """Paths from a ``-z`` listing: unquoted, so non-ASCII names arrive as they are on disk."""
    return [path for path in nul_separated.split("\0") if path]


class RunLock:
    """``.autoresearch/run.lock``: one ``run`` per workspace; a dead holder's lock is taken over."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "run.lock"

    def holder(self) -> tuple[int, str] | None:
        try:
            pid, host = self.path.read_text().split()[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self.holder()
                if holder and pid_alive(holder[0]) and holder[1] == socket.gethostname():
                    raise WorkspaceError(
                        f"another 'autoresearch run' (pid {holder[0]}) is using this workspace; "
                        f"stop it first (kill {holder[0]})"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            return
        raise WorkspaceError(f"could not take {self.path}; remove it if no run is going")

    def release(self) -> None:
        holder = self.holder()
        if holder and holder[0] == os.getpid():
            self.path.unlink(missing_ok=True)
