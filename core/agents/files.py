"""The only door from an agent's tools to the workspace: editable files, checked paths."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

HARNESS_DIRS = (".git", ".autoresearch")  # never readable or writable by an agent


class EditError(ValueError):
    """A refused or impossible file operation; the message goes back to the model."""


class EditableFiles:
    """Reads and edits files under ``root``, refusing every path outside the allowed sets.

    Paths are resolved (``..`` and symlinks followed) before they are checked, so neither can
    escape. ``readable`` files (the protected ones) may be viewed but not changed.
    """

    def __init__(self, root: Path, editable: list[str], readable: list[str] = ()):
        self.root = Path(root).resolve()
        self.editable = {_normal(p) for p in editable}
        self.readable = self.editable | {_normal(p) for p in readable}
        self._originals: dict[str, bytes | None] = {}  # content before the first edit

    def relative(self, path: str, write: bool = False) -> str:
        """``path`` as a checked, normalized path relative to ``root``; raises ``EditError``."""
        if not isinstance(path, str) or not path.strip():
            raise EditError("path must be a non-empty string")
        resolved = (self.root / path.strip()).resolve()
        try:
            rel = resolved.relative_to(self.root).as_posix()
        except ValueError:
            raise EditError(f"refused: {path} is outside the workspace") from None
        allowed = self.editable if write else self.readable
        if rel.split("/")[0] in HARNESS_DIRS or rel not in allowed:
            kind = "editable" if write else "readable"
            raise EditError(
                f"refused: {path} is not {kind}; editable files: {', '.join(sorted(self.editable))}"
            )
        return rel

    def read(self, path: str) -> str:
        rel = self.relative(path)
        return self._text(rel)

    def write(self, path: str, content: str) -> str:
        """Create or overwrite an editable file; returns its relative path."""
        rel = self.relative(path, write=True)
        self._remember(rel)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))
        return rel

    def replace(self, path: str, old: str, new: str) -> str:
        """Replace ``old``, which must occur exactly once, by ``new``; returns the relative path."""
        rel = self.relative(path, write=True)
        text = self._text(rel)
        if not old:
            raise EditError("old text is empty; use write_file to create or overwrite a file")
        count = text.count(old)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise EditError(f"old text {where} in {rel}; it must match exactly once")
        self._remember(rel)
        (self.root / rel).write_bytes(text.replace(old, new, 1).encode("utf-8"))
        return rel

    def create(self, path: str, content: str) -> str:
        """Write a new (or empty) editable file; refuses to overwrite one with content."""
        rel = self.relative(path, write=True)
        if self._bytes(rel):
            raise EditError(f"{rel} already has content; quote the lines to replace")
        return self.write(rel, content)

    def changed(self) -> list[str]:
        """Relative paths whose content now differs from before the first edit."""
        return sorted(rel for rel, before in self._originals.items() if self._bytes(rel) != before)

    def _remember(self, rel: str) -> None:
        if rel not in self._originals:
            self._originals[rel] = self._bytes(rel)

    def _bytes(self, rel: str) -> bytes | None:
        target = self.root / rel
        return target.read_bytes() if target.is_file() else None

    def _text(self, rel: str) -> str:
        data = self._bytes(rel)
        if data is None:
            raise EditError(f"{rel} does not exist")
        try:
            return data.decode("utf-8")  # bytes, not read_text: keep line endings exactly
        except UnicodeDecodeError:
            raise EditError(f"{rel} is not a UTF-8 text file") from None


def _normal(path: str) -> str:
    return PurePosixPath(path).as_posix()
