"""The evaluator: score a prompt template on a labelled split through the Anthropic Messages API.

    python -m autoresearch_prompt_example.evaluate prompt.txt train.jsonl --model M [--base-url URL]

accuracy = correct / items. An item is correct when the first word of the model's reply to the
template, with {text} replaced by the item's text, is the item's label (case ignored). The key is
read from ANTHROPIC_API_KEY, the base URL from --base-url, else ANTHROPIC_BASE_URL.
"""

from __future__ import annotations

import argparse
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic

PLACEHOLDER = "{text}"  # replaced, not str.format(): other braces in a prompt stay as they are
MAX_TOKENS = 20  # a label is one word
WORKERS = 8  # requests in flight
WORD = re.compile(r"[a-z_]+")


def load(path: Path) -> list[dict]:
    """A JSON Lines split: one {"text": ..., "label": ...} per line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_word(reply: str) -> str:
    match = WORD.search(reply.lower())
    return match.group(0) if match else ""


def classify(client: anthropic.Anthropic, model: str, prompt: str) -> str:
    message = client.messages.create(
        model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": prompt}]
    )
    return "".join(block.text for block in message.content if block.type == "text")


def replies(template: str, items: list[dict], client: anthropic.Anthropic, model: str) -> list[str]:
    """The model's reply to the template filled with each item's text, in the items' order."""
    if PLACEHOLDER not in template:
        raise ValueError(f"the prompt template has no {PLACEHOLDER} placeholder for the message")
    prompts = [template.replace(PLACEHOLDER, item["text"]) for item in items]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda prompt: classify(client, model, prompt), prompts))


def is_correct(answer: str, item: dict) -> bool:
    return first_word(answer) == item["label"]


def accuracy(answers: list[str], items: list[dict]) -> float:
    return sum(map(is_correct, answers, items)) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", type=Path, help="the prompt template")
    parser.add_argument("data", type=Path, help="the labelled split (JSON Lines)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url")
    args = parser.parse_args()
    client = anthropic.Anthropic(base_url=args.base_url)
    items = load(args.data)
    answers = replies(args.prompt.read_text(), items, client, args.model)
    for answer, item in zip(answers, items, strict=True):
        if not is_correct(answer, item):  # the misses, for whoever reads the log (the agent too)
            print(f"expected {item['label']}, got {answer.strip()[:60]!r} for {item['text']!r}")
    print("---")
    print(f"accuracy:  {accuracy(answers, items):.4f}")
    print(f"items:     {len(items)}")


if __name__ == "__main__":
    main()
