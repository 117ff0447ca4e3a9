"""Regenerate docs/cli.md (from --help) and docs/schema.md (from the migrations).

python docs/generate.py          # write both
python docs/generate.py --check  # exit 1 if either is stale (run by the tests)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import sqlite_utils

from autoresearch import registry
from autoresearch.cli import cli
from autoresearch.history import TABLES, migrations

DOCS = Path(__file__).parent
# The reference documents autoresearch itself, not the plugins that happen to be installed.
os.environ[registry.LOAD_ENV] = ",".join(registry.DEFAULT_PLUGINS)


def cli_reference() -> str:
    lines = ["# CLI reference", "", "Generated from `--help` by `python docs/generate.py`; do not edit.", ""]
    ctx = click.Context(cli, info_name="autoresearch", terminal_width=100)
    lines += ["```", cli.get_help(ctx), "```", ""]
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        sub = click.Context(command, info_name=f"autoresearch {name}", terminal_width=100)
        lines += [f"## autoresearch {name}", "", "```", command.get_help(sub), "```", ""]
    return "\n".join(lines)


def schema() -> str:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    lines = [
        "# Ledger schema",
        "",
        "Generated from the migrations by `python docs/generate.py`; do not edit.",
        "",
        "The ledger is `<workspace>/.autoresearch/history.db`. Applied migrations: "
        + ", ".join(f"`{m.name}`" for m in migrations.applied(db))
        + ".",
        "",
    ]
    for table in TABLES:
        lines += [f"## {table}", "", "| column | type |", "|---|---|"]
        lines += [f"| `{col.name}` | {col.type} |" for col in db[table].columns]
        lines += ["", "```sql", db[table].schema, "```", ""]
        for index in db[table].indexes:
            lines.append(
                f"- index `{index.name}` on ({', '.join(index.columns)}){' unique' if index.unique else ''}"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    outputs = {DOCS / "cli.md": cli_reference(), DOCS / "schema.md": schema()}
    stale = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    if "--check" in sys.argv:
        for path in stale:
            print(f"{path} is stale: run python docs/generate.py")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
