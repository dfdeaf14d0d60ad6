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
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S) if "bill run" in b]
    steps = [step.strip() for step in block.split("&&")]
    assert all(step.startswith(".venv/bin/cdr ") for step in steps), steps
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_")}
    outputs = {}
    for step in steps:
        argv = step.split()
        argv[0] = str(Path(sys.executable).with_name("cdr"))
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (step, done.stderr)
        outputs[" ".join(step.split()[1:3])] = done.stdout
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
