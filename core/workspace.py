"""The git repository a run works in (GitPython): run branch, commits, resets, attempt refs, lock."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import git
from wcmatch.glob import DOTGLOB, GLOBSTAR, globmatch

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


class BranchMoved(WorkspaceError):
    """A branch was not where the run left it: someone else moved it; nothing was rewritten."""

    def __init__(self, name: str, at: str | None, expected: str | None):
        super().__init__(
            f"branch {name} is at {at[:12] if at else 'nothing'}, not at "
            f"{expected[:12] if expected else 'nothing'} where this run left it: a commit or reset not "
            f"made by the run. Nothing was rewritten; to go on, move it back "
            f"(git branch -f {name} {expected[:12] if expected else ''}) or start a new --tag"
        )


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
        self._local = threading.local()
        self._environment: dict[str, str] = {}
        if self.repo.bare:
            raise WorkspaceError(
                f"{self.root} is a bare git repository (no working tree); clone it (git clone "
                f"{self.root} DIR) and work in the clone"
            )
        self.state_dir = self.root / STATE_DIR
        self._set_identity()

    @property
    def repo(self) -> git.Repo:
        """This thread's GitPython repository: its ``git cat-file`` pipes must not be shared by the
        threads of parallel slots (two readers at once hang)."""
        repo = getattr(self._local, "repo", None)
        if repo is None:
            try:
                repo = git.Repo(self.root)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                raise WorkspaceError(
                    f"{self.root} is not a git repository; run 'git init' there or use "
                    "'autoresearch init TARGET DIR'"
                ) from None
            repo.git.update_environment(**self._environment)
            self._local.repo = repo
        return repo

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
            self._environment = dict(FALLBACK_IDENTITY)
            self.repo.git.update_environment(**self._environment)

    def close(self) -> None:
        """End GitPython's helper processes (``git cat-file``) for this checkout (this thread's)."""
        repo = getattr(self._local, "repo", None)
        if repo is not None:
            repo.close()
            self._local.repo = None

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

    def files_at(self, commit: str) -> list[str]:
        """The paths a commit holds."""
        return [path for path in self.repo.git.ls_tree("-r", "-z", "--name-only", commit).split("\0") if path]

    def blob_sha(self, commit: str, path: str) -> str | None:
        """The git object id of ``path`` in ``commit`` (None where it has no such file)."""
        try:
            return self.repo.commit(commit).tree[path].hexsha
        except KeyError:
            return None

    def branch_commit(self, name: str) -> str | None:
        """Where branch ``name`` points, or None if there is no such branch."""
        try:
            return self.repo.git.rev_parse("--verify", "-q", f"refs/heads/{name}^{{commit}}")
        except git.GitCommandError:
            return None

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

    def move_branch(self, name: str, new: str, old: str | None) -> None:
        """Point branch ``name`` at ``new`` only if it is still at ``old`` (None: does not exist yet).

        A compare-and-swap: a commit someone else made on the branch is never overwritten.
        """
        try:
            self.repo.git.update_ref(f"refs/heads/{name}", new, old or "")
        except git.GitCommandError:
            raise BranchMoved(name, self.branch_commit(name), old) from None

    def reset_clean(self, commit: str) -> None:
        """Detach HEAD at ``commit`` with exactly its files: untracked and ignored ones removed.

        Only for the harness's own checkouts (the draft), never the user's.
        """
        self.clear_stale_lock(force=True)
        self.repo.git.checkout("--detach", "--force", commit)
        self.repo.git.clean("-ffdxq", "--exclude", f"/{STATE_DIR}/")

    def cherry_pick(self, commit: str) -> str | None:
        """``commit``'s change as a new commit on top of HEAD (a draft's); None on a conflict."""
        try:
            self.repo.git.cherry_pick("--allow-empty", "--keep-redundant-commits", commit)
        except git.GitCommandError:
            head = self.head()
            try:
                self.repo.git.cherry_pick("--abort")
            except git.GitCommandError:  # nothing in progress: it failed before starting
                self.reset_clean(head)
            return None
        return self.head()

    def add_worktree(self, path: Path, commit: str) -> None:
        """A second checkout of this repository at ``path``, detached at ``commit``."""
        self.repo.git.worktree("add", "--detach", "--force", str(path), commit)

    def remove_worktrees_under(self, folder: Path) -> None:
        """Forget every worktree of this repository inside ``folder`` (gone or not); others stay."""
        for line in self.repo.git.worktree("list", "--porcelain").splitlines():
            path = Path(line.removeprefix("worktree ")) if line.startswith("worktree ") else None
            if path is not None and path.is_relative_to(folder):
                self.repo.git.worktree("remove", "--force", str(path))

    def extract(self, commit: str, dest: Path) -> None:
        """Write exactly ``commit``'s tracked files into ``dest`` (git archive)."""
        archive = io.BytesIO()
        self.repo.archive(archive, treeish=commit, format="tar")
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="tar")

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
    """``.autoresearch/run.lock``: one ``run`` per workspace, an OS file lock held while it goes on.

    The kernel releases the lock when its process dies, however it dies, so a live run's lock is
    never taken over and a dead one's never blocks. The file holds the pid for the message.
    """

    def __init__(self, state_dir: Path):
        self.path = state_dir / "run.lock"
        self.file = None

    def acquire(self) -> None:
        while True:
            file = open(self.path, "a+")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                file.seek(0)
                holder = file.read().strip() or "unknown"
                file.close()
                raise WorkspaceError(
                    f"another 'autoresearch run' (pid {holder}) is using this workspace; "
                    f"stop it first (kill {holder})"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file that a releasing run unlinked meanwhile
                break
            file.close()
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self.file = file

    def release(self) -> None:
        if self.file is not None:
            self.path.unlink(missing_ok=True)
            self.file.close()
            self.file = None
