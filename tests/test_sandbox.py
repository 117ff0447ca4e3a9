"""The sandbox of every evaluator command: what it may write, see and reach, and its weaker mode."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch import sandbox
from autoresearch.measure import Evaluation, Runner
from autoresearch.sandbox import Sandbox

from conftest import invoke

needs_bwrap = pytest.mark.skipif(sandbox.bwrap_problem() is not None, reason="needs bubblewrap")


def run(tmp_path, code, box):
    return Runner().run([sys.executable, "-c", code], tmp_path, tmp_path / "log", 30, sandbox=box)


@needs_bwrap
def test_only_the_writable_folders_can_be_written(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir(), home.mkdir()
    box = Sandbox(writable=(work,))
    assert run(work, "open('out.txt', 'w').write('ok')", box).status == "ok"
    outside = run(work, f"open({str(home / 'x')!r}, 'w')", box)
    assert outside.status == "crash" and "Read-only file system" in outside.reason
    assert (work / "out.txt").exists() and not (home / "x").exists()


@needs_bwrap
def test_secret_paths_are_empty_inside(tmp_path):
    secret = tmp_path / "val"
    secret.mkdir()
    (secret / "rows.txt").write_text("the answers")
    hidden = Sandbox(writable=(tmp_path,), hidden=(secret,))
    listing = run(tmp_path, f"import os; print(os.listdir({str(secret)!r}))", hidden)
    assert listing.output().strip() == "[]"
    shown = run(tmp_path, f"import os; print(os.listdir({str(secret)!r}))", Sandbox(writable=(tmp_path,)))
    assert shown.output().strip() == "['rows.txt']"
    assert (secret / "rows.txt").read_text() == "the answers"


@needs_bwrap
def test_network_is_off_unless_the_target_needs_it(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    connect = f"import socket; socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), 2)"
    try:
        assert run(tmp_path, connect, Sandbox(writable=(tmp_path,), network=True)).status == "ok"
        cut = run(tmp_path, connect, Sandbox(writable=(tmp_path,)))
        # a fresh network namespace: the host's listening socket is not there
        assert cut.status == "crash" and "Connection refused" in cut.reason
    finally:
        server.close()


def test_without_bubblewrap_every_run_warns_and_no_network_refuses(toy, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed; install it")
    outside = tmp_path / "written-outside"
    unsandboxed = Runner().run(["touch", str(outside)], tmp_path, tmp_path / "log", 10, sandbox=Sandbox(()))
    assert unsandboxed.status == "ok" and outside.exists()  # the weaker mode really is weaker
    for _ in range(2):
        result = invoke("run", "--agent", "mutate", "--tag", "t", "--max-experiments", "1")
        assert result.exit_code == 0, result.output
        warning = "warning: evaluators run WITHOUT a sandbox: bubblewrap (bwrap) is not installed"
        assert warning in result.output
    refused = invoke("run", "--agent", "mutate", "--tag", "t", "--no-network")
    assert refused.exit_code != 0 and "--no-network needs the sandbox" in refused.output


def test_the_gpu_devices_of_the_machine_are_passed_after_the_fresh_dev(tmp_path, monkeypatch):
    fake = ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-caps/nvidia-cap1"]
    for name in fake:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    patterns = (f"{tmp_path}/nvidia*", f"{tmp_path}/nvidia-caps/*", f"{tmp_path}/dri/*", f"{tmp_path}/kfd")
    monkeypatch.setattr(sandbox, "GPU_DEVICES", patterns)
    devices = sandbox.gpu_devices()
    assert devices == sorted(str(tmp_path / name) for name in fake)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: f"/usr/bin/{name}")
    args = Sandbox(writable=(tmp_path,)).wrap(["python", "train.py"], tmp_path, devices=devices)
    binds = [args[i + 1] for i, arg in enumerate(args) if arg == "--dev-bind"]
    assert binds == devices and all(args[args.index(d) + 1] == d for d in devices)  # same path inside
    first_device = args.index("--dev-bind")
    assert args.index("--dev") < first_device  # a device bound before the fresh /dev would vanish
    assert args[args.index("--ro-bind-try") : args.index("--ro-bind-try") + 3] == [
        "--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia",
    ]  # fmt: skip
    assert args.index("--proc") < args.index("--ro-bind-try")
    assert args[-3:] == ["--", "python", "train.py"]
    without = Sandbox(writable=(tmp_path,)).wrap(["true"], tmp_path, devices=[])
    assert "--dev-bind" not in without and "--ro-bind-try" not in without


@needs_bwrap
def test_a_device_is_there_only_when_passed_and_the_users_terminals_never_are(tmp_path):
    device = next(d for d in ("/dev/fuse", "/dev/net/tun", "/dev/vsock", "/dev/kvm") if Path(d).exists())
    look = f"import os; print(os.path.exists({device!r}), sorted(os.listdir('/dev/pts')))"

    def inside(devices):
        argv = Sandbox(writable=(tmp_path,)).wrap([sys.executable, "-c", look], tmp_path, devices=devices)
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split(None, 1)

    assert inside([device]) == ["True", "['ptmx']\n"]
    assert inside([]) == ["False", "['ptmx']\n"]  # a fresh devpts: no terminal of the user's to type into


@needs_bwrap
def test_the_checkout_is_read_only_and_each_command_gets_an_empty_tmpdir(tmp_path):
    """A command cannot write the checkout; what it leaves in $TMPDIR, a link to a folder of the
    user's included, is gone for the next command, and the linked folder is left alone."""
    root, scratch, mine = tmp_path / "tree", tmp_path / "scratch", tmp_path / "mine"
    for folder in (root, scratch, mine):
        folder.mkdir()
    (mine / "keep.txt").write_text("the user's")
    evaluation = Evaluation(root, scratch, budget=30, seed=None, log_path=tmp_path / "log", runner=Runner())
    first = evaluation.run(
        "touch tree.txt || echo refused; touch $TMPDIR/left; "
        f"ln -s {mine} $AUTORESEARCH_SCRATCH/link && rm -r $TMPDIR && mv $AUTORESEARCH_SCRATCH/link $TMPDIR"
    )
    assert first.status == "ok" and "Read-only file system" in first.output(), first.output()
    assert not (root / "tree.txt").exists() and (scratch / "tmp").is_symlink()
    second = evaluation.run('ls -A "$TMPDIR"; test -d "$TMPDIR" && ! test -L "$TMPDIR" && echo fresh')
    assert second.output().split() == ["fresh"]
    assert (mine / "keep.txt").read_text() == "the user's"
