"""The live dashboard in a real headless Chromium, against a ledger that a real run is writing."""

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from autoresearch.history import History

from conftest import command_workspace, wait_until

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> X 3.0 -> 2.0'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(  # CI installs it (.ci/run), so there a missing browser fails
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]

EVALUATE = """\
import os, pathlib, time
import model
print("phase: training", flush=True)
while model.X == 1.8 and not pathlib.Path(os.environ["TOY_GATE"]).exists():  # experiment 2 waits
    time.sleep(0.1)
print("phase: evaluation", flush=True)
print("---")
print(f"loss: {model.score():.6f}")
"""

# The agent the run calls (command agent): step N sets X, waits for a go-file if the step names one.
AGENT = """\
import json, pathlib, sys, time
steps = json.loads(pathlib.Path(sys.argv[1]).read_text())
counter = pathlib.Path(sys.argv[2])
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
step = steps[n]
while step["wait_for"] and not pathlib.Path(step["wait_for"]).exists():
    time.sleep(0.1)
text = pathlib.Path("model.py").read_text()
pathlib.Path("model.py").write_text(text.replace("X = " + step["from"], "X = " + step["to"]))
pathlib.Path(".autoresearch/agent/description.txt").write_text(step["description"])
"""


def test_dashboard_follows_a_running_experiment(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    expect = sync_api.expect
    root = command_workspace(tmp_path / "toy", EVALUATE, budget=60)
    go = tmp_path / "go"
    steps = [
        {"from": "3.0", "to": "2.0", "description": HOSTILE, "wait_for": None},
        {"from": "2.0", "to": "1.8", "description": "X 2.0 -> 1.8", "wait_for": str(go)},
    ]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    (tmp_path / "agent.py").write_text(AGENT)
    agent = f"{sys.executable} {tmp_path / 'agent.py'} {tmp_path / 'steps.json'} {tmp_path / 'counter'}"
    gate = tmp_path / "gate"
    env = {**os.environ, "TOY_GATE": str(gate)}
    cli = [sys.executable, "-m", "autoresearch.cli"]
    run = subprocess.Popen(
        [*cli, "run", "--agent", "command", "--agent-command", agent, "--accept", "strict",
         "--max-experiments", "2", "--tag", "web"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    dashboard = subprocess.Popen([*cli, "dashboard"], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        url = dashboard.stdout.readline().split()[1]
        assert url.startswith("http://127.0.0.1:")
        ledger = root / ".autoresearch" / "history.db"
        wait_until(ledger.exists, 60, "the ledger")
        # experiment 1 is recorded; experiment 2's agent waits for the go-file: it is in flight
        wait_until(lambda: getattr(History(ledger).pending("web"), "number", None) == 2, 120, "experiment 2")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector("#experiments tr[data-number='1']")
            assert page.locator("#experiments tbody tr").count() == 2
            description = page.locator("#experiments tr[data-number='1'] td.description").text_content()
            assert description == HOSTILE  # shown as text
            assert page.locator("#experiments img, #chart img").count() == 0
            expect(page.locator("#inflight")).to_contain_text("experiment 2: propose")
            page.evaluate("window.loadedOnce = true")

            go.write_text("go")  # the agent proposes; the evaluator starts training and waits for the gate
            expect(page.locator("#inflight")).to_contain_text("measure (training)", timeout=60_000)
            expect(page.locator("#inflight pre.log")).to_contain_text("phase: training")
            gate.write_text("go")  # the evaluator finishes
            page.wait_for_selector("#experiments tr[data-number='2']", timeout=60_000)
            seen = time.time()
            landed = History(ledger).experiment("web", 2)["finished_at"]
            delay = seen - datetime.fromisoformat(landed).timestamp()
            print(f"row 2 appeared {delay:.2f} s after it was recorded")
            assert delay < 10  # pushed on change (measured: well under a second); 10 s bounds a busy machine
            assert page.evaluate("window.loadedOnce") is True  # no reload
            assert page.evaluate("window.pwned") is None  # nothing ran
            assert page.locator("#experiments tr[data-number='2'] td.status").text_content() == "keep"
            page.wait_for_function(
                "document.querySelector('#inflight').textContent.includes('nothing in flight')"
            )
            assert page.locator("svg.chart circle.keep").count() == 2

            page.click("#experiments tr[data-number='2']")
            page.wait_for_selector("#detail pre.diff")
            assert "+X = 1.8" in page.locator("#detail pre.diff").text_content()
            assert "loss: 0.31" in page.locator("#detail pre.log").text_content()
            page.select_option("#filter", "baseline")
            assert page.locator("#experiments tbody tr").count() == 1
            page.select_option("#filter", "")
            page.click("#experiments th[data-key='number']")  # ascending
            assert page.locator("#experiments tbody tr").first.get_attribute("data-number") == "0"
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert errors == [] and (tmp_path / "dashboard.png").stat().st_size > 10_000
            browser.close()
        assert run.wait(timeout=120) == 0, run.stdout.read()
    finally:
        for proc in (run, dashboard):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        print(run.stdout.read())
    if os.environ.get("AUTORESEARCH_SCREENSHOT"):  # docs: keep the screenshot
        shutil.copy(tmp_path / "dashboard.png", os.environ["AUTORESEARCH_SCREENSHOT"])
