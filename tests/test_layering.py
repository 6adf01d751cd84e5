"""The layers: data → models → training/evaluation → methods → experiment → search → sweep (Ray) → report.

Only ``csrec/sweep`` imports Ray or ``csrec.sweep`` (``csrec/__init__.py`` only lazily, for
``csrec.tune``): data, models, methods, training, experiment, search and report never do, even
inside a function; the search space and the report import without Ray installed (simulated by an
import hook that refuses ``ray``); nothing under ``csrec`` or ``tests`` imports ``sweeps/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "csrec"
#: Every module but the sweep layer itself and the package's lazy ``csrec.tune`` entry point.
OUTSIDE_THE_SWEEP = [p for p in sorted(PACKAGE.rglob("*.py"))
                     if p.relative_to(PACKAGE).parts[0] != "sweep" and p != PACKAGE / "__init__.py"]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", OUTSIDE_THE_SWEEP, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_sweep_layer_imports_ray(path):
    bad = {m for m in _imports(path) if m == "ray" or m.startswith(("ray.", "csrec.sweep"))}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_nothing_imports_the_scripts():
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "tests").rglob("*.py")):
        text = path.read_text()
        assert not any(m == "sweeps" or m.startswith("sweeps.") for m in _imports(path)), path
        if path != Path(__file__):
            assert "spec_from_file_location" not in text or "sweeps" not in text, path


BLOCK_RAY = """
import importlib.abc, sys

class NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: Ray is not installed here)")
        return None

sys.meta_path.insert(0, NoRay())
import csrec, csrec.experiment, csrec.search, csrec.report, csrec.report.cli
from csrec.search import GridConfig
GridConfig.from_argv(["--smoke"]).cells()
assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules)
"""


def test_search_and_report_import_without_ray():
    done = subprocess.run([sys.executable, "-c", BLOCK_RAY], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_block_does_block_ray():
    code = BLOCK_RAY.split("import csrec,")[0] + "import csrec.sweep\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0 and "blocked: Ray is not installed here" in done.stderr


def test_import_csrec_does_not_import_ray():
    code = "import csrec, sys; sys.exit(1 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
