"""The layers: ``ingest.core`` (the shared vocabulary) imports nothing of the project; ``ingest.config`` imports no
collector (config -> collectors -> intake -> app -> config was a cycle) and, loading a configuration, neither the
collectors, the parser engine's Arrow, nor the catalog's SQLAlchemy. Each is checked in a fresh interpreter, where
nothing else has imported them first, and in the source, so that a lazy import inside a function is caught too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INGEST = REPO / "ingest"


def imported_after(code: str) -> list[str]:
    """The modules a fresh interpreter has imported after running ``code`` (from the repository's folder)."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (inside functions too), as absolute names."""
    package = "ingest" if path.parent.name == "ingest" else f"ingest.{path.parent.name}"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import collectors`
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
    return found


def test_importing_the_configuration_imports_no_collector():
    modules = imported_after("import ingest.config")
    assert not [m for m in modules if m == "ingest.collectors" or m.startswith("ingest.collectors.")]
    assert "ingest.intake" not in modules and "ingest.app" not in modules


def test_loading_the_shipped_configuration_imports_no_collector_nor_arrow_nor_sqlalchemy():
    modules = imported_after("from ingest.config import load_config; load_config('config/cdr.toml', env={})")
    heavy = [m for m in modules if m.split(".")[0] in ("pyarrow", "sqlalchemy", "paramiko", "aioftp", "carriers")
             or m.startswith("ingest.collectors")]
    assert heavy == []


def test_the_core_imports_nothing_of_the_project():
    modules = imported_after("import ingest.core")
    assert [m for m in modules if m.startswith("ingest.")] == ["ingest.core"]
    assert not {m for m in imports_of(INGEST / "core.py") if m.startswith(("ingest", "carriers"))}


def test_the_configuration_module_does_not_import_the_collectors_anywhere():
    """Fails as soon as ingest/config.py imports ingest.collectors (or the old parsers), even lazily."""
    imported = imports_of(INGEST / "config.py")
    assert imported, "the import scan found nothing: it is broken"
    assert "ingest.core" in imported  # the scan resolves relative imports
    offending = sorted(m for m in imported if m.startswith(("ingest.collectors", "ingest.plugins", "ingest.intake",
                                                           "ingest.app", "carriers")))
    assert offending == []


def test_the_import_scan_sees_a_lazy_relative_import_of_the_collectors(tmp_path):
    """The check above would catch the import config had before (inside _check_plugins)."""
    fake = INGEST / "config.py"
    text = fake.read_text() + "\n\ndef _late():\n    from .collectors import COLLECTORS\n    return COLLECTORS\n"
    probe = tmp_path / "ingest" / "config.py"
    probe.parent.mkdir()
    probe.write_text(text)
    assert "ingest.collectors" in imports_of(probe)


def test_origin_is_still_imported_from_intake():
    from ingest.core import Origin
    from ingest.intake import Origin as FromIntake

    assert FromIntake is Origin
