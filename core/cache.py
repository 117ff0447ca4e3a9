"""Cache integrity: the data-cache files a target's metric depends on (``Target.cache_files``).

They are hashed when prepared and checked before every measurement, so a file rewritten between
measurements (by anything: the sandbox already mounts the cache read-only for evaluators) stops the
run with one line instead of skewing the metric; ``autoresearch prepare`` rebuilds them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .target import Target


def fingerprint(paths: list[Path]) -> dict[str, str]:
    """The sha256 of each file ("missing" where there is none)."""
    hashes = {}
    for path in paths:
        try:
            with open(path, "rb") as file:
                hashes[str(path)] = hashlib.file_digest(file, "sha256").hexdigest()
        except FileNotFoundError:
            hashes[str(path)] = "missing"
    return hashes


class CacheManifest:
    """The hashes of one target's cache files, as prepared, in ``.autoresearch/cache/``."""

    def __init__(self, state_dir: Path, target: Target):
        self.target = target
        self.path = state_dir / "cache" / f"{target.name}.json"

    def record(self, hashes: dict[str, str] | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        hashes = fingerprint(self.target.cache_files()) if hashes is None else hashes
        self.path.write_text(json.dumps(hashes, indent=1))

    def recorded(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def changed(self) -> list[str]:
        """The cache files that differ from what was prepared (none when nothing was recorded)."""
        recorded = self.recorded()
        now = fingerprint(self.target.cache_files())
        return [path for path, sha in now.items() if path in recorded and recorded[path] != sha]

    def problem(self) -> str | None:
        changed = self.changed()
        if not changed:
            return None
        return (
            f"the data cache changed since it was prepared ({changed[0]}); the metric depends on it, "
            "so nothing more is measured: run 'autoresearch prepare' to rebuild it, then run again"
        )

    def ensure(self, root: Path | None, echo=print) -> None:
        """Prepare the target (idempotent); record the hashes of files never recorded before
        (the first time, or after a setting named new files)."""
        self.target.prepare(root, echo=echo)
        recorded = self.recorded()
        now = fingerprint(self.target.cache_files())
        if set(now) - set(recorded):
            self.record(recorded | {path: sha for path, sha in now.items() if path not in recorded})

    def rebuild(self, root: Path | None, echo=print) -> None:
        """Remove the changed files, prepare again, and record the fresh hashes."""
        for path in self.changed():
            echo(f"rebuilding {path} (it changed since it was prepared)")
            Path(path).unlink(missing_ok=True)
        self.target.prepare(root, echo=echo)
        self.record()
