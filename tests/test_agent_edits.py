"""Checked file access for agents, and SEARCH/REPLACE edit blocks."""

from __future__ import annotations

import pytest

from autoresearch.agents.edits import EditBlock, apply_edit_blocks, parse_edit_blocks
from autoresearch.agents.files import EditableFiles, EditError


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "train.py").write_text("a = 1\nb = 2\na = 1\n")
    (root / "prepare.py").write_text("DATA = 'fixed'\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    return EditableFiles(root, ["train.py", "src/new.py"], readable=["prepare.py"])


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "/etc/passwd", "prepare.py", ".git/config", "sub/../../secret.txt", ""],
)
def test_writes_outside_the_editable_files_are_refused(files, path):
    with pytest.raises(EditError, match="refused|non-empty"):
        files.write(path, "x")


def test_protected_files_are_readable_but_not_writable(files):
    assert files.read("prepare.py") == "DATA = 'fixed'\n"
    with pytest.raises(EditError, match="not editable; editable files: src/new.py, train.py"):
        files.replace("prepare.py", "fixed", "easy")
    with pytest.raises(EditError, match="not readable"):
        files.read("notes.txt")


def test_symlinks_cannot_lead_out(files, tmp_path):
    (files.root / "src").mkdir()
    (files.root / "src" / "new.py").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(EditError, match="outside the workspace"):
        files.write("src/new.py", "x")
    assert (tmp_path / "secret.txt").read_text() == "outside\n"


def test_equivalent_spellings_of_an_editable_path_work(files):
    assert files.write("./src/../train.py", "c = 3\n") == "train.py"
    assert files.write(str(files.root / "src" / "new.py"), "d = 4\n") == "src/new.py"
    assert files.changed() == ["src/new.py", "train.py"]


def test_replace_needs_exactly_one_match(files):
    with pytest.raises(EditError, match="occurs 2 times"):
        files.replace("train.py", "a = 1\n", "a = 5\n")
    with pytest.raises(EditError, match="does not occur"):
        files.replace("train.py", "z = 0", "")
    files.replace("train.py", "b = 2", "b = 3")
    assert files.read("train.py") == "a = 1\nb = 3\na = 1\n"


def test_changed_ignores_edits_that_were_undone(files):
    files.replace("train.py", "b = 2", "b = 3")
    files.replace("train.py", "b = 3", "b = 2")
    assert files.changed() == []


def test_line_endings_are_kept(files):
    (files.root / "train.py").write_bytes(b"a = 1\r\nb = 2\r\n")
    files.replace("train.py", "b = 2", "b = 3")
    assert (files.root / "train.py").read_bytes() == b"a = 1\r\nb = 3\r\n"


REPLY = """\
DESCRIPTION: two changes

train.py
```python
<<<<<<< SEARCH
b = 2
=======
b = 3
>>>>>>> REPLACE
```

<<<<<<< SEARCH
=======
x = 0
>>>>>>> REPLACE

**src/new.py**
```
<<<<<<< SEARCH
=======
print("new")
>>>>>>> REPLACE
```
"""


def test_blocks_are_parsed_with_their_paths():
    assert parse_edit_blocks(REPLY) == [
        EditBlock("train.py", "b = 2\n", "b = 3\n"),
        EditBlock("train.py", "", "x = 0\n"),  # no name of its own: the previous block's
        EditBlock("src/new.py", "", 'print("new")\n'),
    ]


def test_an_unterminated_block_is_dropped():
    cut = "train.py\n<<<<<<< SEARCH\nb = 2\n=======\nb = 3\n"
    assert parse_edit_blocks(REPLY + cut) == parse_edit_blocks(REPLY)
    assert parse_edit_blocks("no blocks here") == []


def test_blocks_are_applied_and_failures_reported(files):
    blocks = parse_edit_blocks(REPLY) + [
        EditBlock("prepare.py", "DATA = 'fixed'\n", "DATA = 'easy'\n"),
        EditBlock(None, "a", "b"),
    ]
    errors = [error for _, error in apply_edit_blocks(blocks, files)]
    assert errors == [
        "block 2 (train.py): train.py already has content; quote the lines to replace",
        "block 4 (prepare.py): refused: prepare.py is not editable; editable files: src/new.py, train.py",
        "block 5 (no path): no file path on the line before <<<<<<< SEARCH",
    ]
    assert files.read("train.py") == "a = 1\nb = 3\na = 1\n"
    assert files.read("src/new.py") == 'print("new")\n'
    assert files.read("prepare.py") == "DATA = 'fixed'\n"


CODE = """\
def step(x):
    if x > 0:
        x = x - 1  # shrink
    return x


LR = 0.1  # learning rate
"""


@pytest.mark.parametrize(
    "search, replace, expected",
    [
        # occurs once as a part of a line: the model's newline ends the line early
        ("LR = 0.1\n", "LR = 0.05\n", CODE.replace("LR = 0.1  #", "LR = 0.05  #")),
        # the same lines with other indentation: the replacement follows the file's indentation
        (
            "if x > 0:\n    x = x - 1  # shrink\n",
            "if x > 1:\n    x = x - 2\n",
            CODE.replace("if x > 0:\n        x = x - 1  # shrink", "if x > 1:\n        x = x - 2"),
        ),
        # other spacing inside and at the ends of lines
        ("x = x  -  1   # shrink  \n", "x = x - 3\n", CODE.replace("x - 1  # shrink", "x - 3")),
    ],
    ids=["part-of-a-line", "indentation", "inner-spaces"],
)
def test_an_unambiguous_near_match_is_applied(tmp_path, search, replace, expected):
    (tmp_path / "train.py").write_text(CODE)
    files = EditableFiles(tmp_path, ["train.py"])
    assert apply_edit_blocks([EditBlock("train.py", search, replace)], files) == []
    assert files.read("train.py") == expected


def test_an_ambiguous_near_match_is_refused(tmp_path):
    (tmp_path / "train.py").write_text("a = 1  # one\nb = 2\na = 1  # two\n")
    files = EditableFiles(tmp_path, ["train.py"])
    ((_, error),) = apply_edit_blocks([EditBlock("train.py", "a  = 1\n", "a = 3\n")], files)
    assert error == "block 1 (train.py): old text does not occur in train.py; it must match exactly once"
    assert apply_edit_blocks([EditBlock("train.py", "a = 1\n", "a = 3\n")], files)  # twice as a part
    assert files.read("train.py") == "a = 1  # one\nb = 2\na = 1  # two\n"
