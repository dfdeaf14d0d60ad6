"""The README's first command (the demo) keeps working: its cdr steps run on the shipped samples and show
files loaded and the resent file held. (Its venv/pip part is what CI's own install already does.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [block.strip() for block in blocks[:2]]


def test_the_readme_opens_with_the_demo_and_the_test_command():
    demo, tests = readme_commands()
    assert "cdr upload samples/" in demo and "cdr files" in demo
    assert (REPO / ".ci" / "run").read_text().strip().endswith(tests)


def test_the_demo_command_loads_the_samples_and_holds_the_resend(tmp_path):
    demo = readme_commands()[0]
    steps = [step.strip() for step in demo.split("&&") if step.strip().startswith(".venv/bin/cdr")]
    assert steps, demo
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_")}
    outputs = []
    for step in steps:
        argv = step.split()
        argv[0] = str(Path(sys.executable).with_name("cdr"))
        expanded = []
        for arg in argv:  # the shell's glob
            expanded += sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob(arg)) if "*" in arg else [arg]
        done = subprocess.run(expanded, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    upload, listing = outputs
    assert upload.count(": loaded,") == 2
    assert "held (duplicate-content)" in upload
    assert "duplicate-content" in listing and (tmp_path / "var" / "cdr.sqlite").exists()
    assert not (tmp_path / "config" / "var").exists()  # config/cdr.toml's ../var: the clone's var/


def test_the_billing_example_runs_on_the_shipped_samples(tmp_path):
    """README's Billing worked example, step by step in a fresh copy of the samples and configuration: the charges
    allocated as they load, the unregistered number listed and excepted, the run built, reported, locked and
    exported with exact prices."""
    outputs = {command: runs[-1][0] for command, runs in run_worked_example(tmp_path, "bill lock").items()}
    charges = outputs["charges"].splitlines()
    assert len(charges) == 3 and all(" auto " in line and "KIWI003" in line for line in charges[1:])
    assert outputs["calls unmatched"].splitlines()[1].split()[:4] == ["07700900999", "hero", "1", "0.04"]
    assert outputs["bill run"].startswith("run 1 (2026-10, draft, build): 4 lines (0 late)")
    report = [line.split() for line in outputs["bill report"].splitlines()]
    assert ["unmatched", "unregistered-number", "GBP", "1", "0.04"] in report
    # Pounds and New Zealand dollars are totalled apart, never added together.
    assert ["GBP", "1", "0.15", "0.14", "-", "0.01"] in report
    assert ["NZD", "3", "142.02", "116.62", "-", "25.40"] in report
    assert outputs["bill lock"].strip() == "run 1 (2026-10) locked: 4 lines"
    lines = outputs["bill export"].splitlines()
    assert lines[0].startswith("run,period,account,number,item_date,late,source_kind,source_id,carrier")
    priced = {(row.split(",")[9], row.split(",")[13], row.split(",")[14]) for row in lines[1:]}
    assert priced == {("Mobile", "GBP", "0.15"),  # 60 s at 0.15 a minute
                      ("line-rental", "NZD", "49.00"),  # a whole month at the fixed price
                      ("broadband", "NZD", "92.87"),  # 77.39 + 20% = 92.868
                      ("Mobile", "NZD", "0.15")}


def test_the_network_example_runs_on_the_shipped_samples(tmp_path):
    """README's "Our own network" worked example, step by step in a fresh copy of the samples and configuration:
    gw-b's file alone leaves its calls waiting for gw-a; with gw-a's, three xDRs, two on accounts by their
    numbers, one raising a security alert; the billing run prices the two."""
    outputs = run_worked_example(tmp_path, "xdrs")
    waiting = outputs["legs waiting"][0][0].splitlines()
    assert len(waiting) == 4 and all(line.split()[-5] == "4" for line in waiting[1:])  # 4 legs each, waiting
    xdrs = [line.split() for line in outputs["xdrs"][0][0].splitlines()[1:]]
    assert [(x[5], x[6], x[-6], x[-5], x[-3], x[-2]) for x in xdrs] == [
        ("ACME001", "01632960123", "112", "112", "8", "complete"),
        ("BETA002", "01632960124", "60", "60", "8", "complete"),
        ("-", "01632960125", "0", "0", "8", "complete")]
    assert "security alert" in outputs["upload samples/radius/detail-20260211-gw-a"][0][1]
    [alert] = outputs["alerts"][0][0].splitlines()[1:]
    assert "01632960125" in alert and "gw-b" in alert
    assert outputs["bill run"][0][0].startswith(
        "run 1 (2026-02, draft, build): 2 lines (0 late); GBP: retail 0.06, cost 0.00, margin 0.06; "
        "exceptions: unmatched 1")


def run_worked_example(tmp_path, marker: str) -> dict[str, list[tuple[str, str]]]:
    """Run the README's ``sh`` block containing ``marker``, step by step (each a ``.venv/bin/cdr`` command joined
    by ``&&``), in a fresh copy of the samples and configuration; each step's (stdout, stderr) by its command and
    first argument ("bill run", "upload samples/..."), in order."""
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S) if marker in b]
    steps = [step.strip() for step in block.split("&&")]
    assert all(step.startswith(".venv/bin/cdr ") for step in steps), steps
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_")}
    outputs: dict[str, list[tuple[str, str]]] = {}
    for step in steps:
        argv = step.split()
        argv[0] = str(Path(sys.executable).with_name("cdr"))
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (step, done.stderr)
        outputs.setdefault(" ".join(step.split()[1:3]), []).append((done.stdout, done.stderr))
    return outputs
