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
