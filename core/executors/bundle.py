"""Shipping commits to Ray nodes as git bundles, incremental where the node has the history.

The driver makes a bundle of one commit against the commits a node says it has (``create``); the
node keeps every commit it received in a cache repository (``CacheRepo``), so the next bundle to
it carries only what is new: usually one commit's changed files. A node that lost its cache, or
has none yet, gets a full bundle.

``git bundle create`` bundles refs, not bare commits, and the driver writes no refs for this; so
``create`` writes the (standard, v2) bundle itself: a header naming the commit and the
prerequisite commits, then ``git pack-objects``' pack. The node reads it with git's own
``git bundle verify`` and ``git fetch``.
"""

from __future__ import annotations

import fcntl
import io
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path

BUNDLE_REF = "refs/autoresearch/measured"
HAVES = 64  # how many of its newest commits a node offers as the base of an incremental bundle


def _git(git_dir: Path | str, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], input=input, capture_output=True, check=True
    ).stdout


def create(git_dir: Path | str, commit: str, haves: list[str]) -> bytes:
    """A bundle of ``commit`` for a node that has ``haves`` (those this repository knows are
    used as its base; with none known, the bundle is full)."""
    known = _known(git_dir, haves)
    revs = "\n".join([commit, *(f"^{h}" for h in known)]) + "\n"
    listing = _git(git_dir, "rev-list", "--boundary", "--stdin", input=revs.encode()).decode()
    prerequisites = sorted({line[1:] for line in listing.split() if line.startswith("-")})
    pack = _git(git_dir, "pack-objects", "--stdout", "--revs", "--thin", "-q", input=revs.encode())
    header = "# v2 git bundle\n" + "".join(f"-{p}\n" for p in prerequisites) + f"{commit} {BUNDLE_REF}\n\n"
    return header.encode() + pack


def prerequisites(bundle: bytes) -> list[str]:
    """The commits a bundle needs its receiver to have (none: a full bundle)."""
    header = bundle.split(b"\n\n", 1)[0].decode()
    return [line[1:41] for line in header.splitlines() if line.startswith("-")]


def _known(git_dir: Path | str, haves: list[str]) -> list[str]:
    """The commits among ``haves`` that this repository has."""
    if not haves:
        return []
    query = "".join(f"{h}^{{commit}}\n" for h in haves).encode()
    answers = _git(git_dir, "cat-file", "--batch-check", input=query).decode().splitlines()
    return [h for h, answer in zip(haves, answers, strict=True) if not answer.endswith("missing")]


class CacheRepo:
    """A node's bare repository of every commit it was sent (``refs/have/<commit>``)."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def locked(self):
        """Hold the repository alone (the node's tasks share it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (self.path / "HEAD").exists():
                subprocess.run(["git", "init", "-q", "--bare", str(self.path)], check=True)
            yield self

    def has(self, commit: str) -> bool:
        return bool(_known(self.path, [commit]))

    def haves(self) -> list[str]:
        """Its newest commits, the base a driver can make an incremental bundle against."""
        refs = _git(
            self.path,
            "for-each-ref",
            "--sort=-committerdate",
            f"--count={HAVES}",
            "--format=%(objectname)",
            "refs/have/",
        )
        return refs.decode().split()

    def add(self, bundle: bytes, commit: str) -> bool:
        """Store ``commit`` from ``bundle``; False when the bundle needs commits this repo lacks."""
        with tempfile.NamedTemporaryFile(dir=self.path, suffix=".bundle") as file:
            file.write(bundle)
            file.flush()
            try:
                _git(self.path, "bundle", "verify", "-q", file.name)
            except subprocess.CalledProcessError:
                return False
            _git(self.path, "fetch", "-q", file.name, f"{BUNDLE_REF}:refs/have/{commit}")
        return True

    def extract(self, commit: str, dest: Path) -> None:
        """Write exactly ``commit``'s tracked files into ``dest`` (as ``Workspace.extract``)."""
        archive = io.BytesIO(_git(self.path, "archive", "--format=tar", commit))
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="tar")
