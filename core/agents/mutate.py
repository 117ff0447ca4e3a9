"""The offline baseline agent: perturb one UPPER_CASE numeric constant per experiment."""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass

from autoresearch import Agent, AgentExhausted, Brief, Proposal, hookimpl

NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
FLOAT_FACTORS = (0.5, 0.8, 1.25, 2.0)
DESCRIPTION = re.compile(r"^(\w+) (\S+) -> (\S+)")


@dataclass
class Constant:
    path: str
    name: str
    value: int | float
    line: int  # 1-based
    start: int  # column span of the literal
    end: int


def find_constants(path: str, source: str) -> list[Constant]:
    """Module-level ``NAME = number`` assignments (``-number`` included; bools excluded)."""
    found = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Name) and NAME.match(target.id)):
            continue
        number = ast.literal_eval(value) if _is_number(value) else None
        if number is None or value.lineno != value.end_lineno:
            continue
        found.append(Constant(path, target.id, number, value.lineno, value.col_offset, value.end_col_offset))
    return found


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def format_number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    text = f"{value:.6g}"
    return text if any(c in text for c in ".en") else text + ".0"


def neighbours(value: int | float) -> list[int | float]:
    """The values one step away: multiplicative for floats, ±1 and ×2/÷2 for ints."""
    if isinstance(value, int):
        steps = [value + 1, value - 1, value * 2, value // 2]
        return [v for v in dict.fromkeys(steps) if v != value and (v > 0 or value <= 0)]
    return [float(format_number(value * f)) for f in FLOAT_FACTORS] if value else []


def attempted(descriptions: list[str]) -> set[tuple[str, str]]:
    """(name, value) pairs tried earlier in this run, from descriptions like ``LR 0.04 -> 0.05``."""
    pairs = set()
    for text in descriptions:
        match = DESCRIPTION.match(text or "")
        if match:
            pairs.add((match.group(1), match.group(3)))
    return pairs


class MutateAgent(Agent):
    name = "mutate"
    description = "Offline baseline: perturbs one UPPER_CASE numeric constant in an editable .py file."

    def announce(self) -> str:
        return "agent: mutate (offline, no LLM); set ANTHROPIC_API_KEY or pass --agent to use an LLM"

    def propose(self, brief: Brief) -> Proposal:
        tried = attempted(brief.descriptions)
        options = []
        for path in brief.editable:
            if not path.endswith(".py"):
                continue
            source = (brief.root / path).read_text()
            for constant in find_constants(path, source):
                for value in neighbours(constant.value):
                    if (constant.name, format_number(value)) not in tried:
                        options.append((constant, value))
        if not options:
            raise AgentExhausted("every one-step change of every UPPER_CASE constant was tried already")
        constant, value = random.Random(brief.seed).choice(options)
        file = brief.root / constant.path
        lines = file.read_bytes().splitlines(keepends=True)
        line = lines[constant.line - 1]  # ast columns are UTF-8 byte offsets
        lines[constant.line - 1] = (
            line[: constant.start] + format_number(value).encode() + line[constant.end :]
        )
        file.write_bytes(b"".join(lines))
        old, new = format_number(constant.value), format_number(value)
        return Proposal(description=f"{constant.name} {old} -> {new}")


@hookimpl
def register_agents(register):
    register(MutateAgent)
