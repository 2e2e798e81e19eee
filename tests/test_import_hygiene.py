"""The streaming core runs without a terminal UI: importing it must not import Textual or Rich."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = sorted(
    f"tui.streaming.{path.stem}"
    for path in (ROOT / "tui" / "streaming").glob("*.py")
    if path.stem != "__init__"
)


def test_the_core_imports_no_textual():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in CORE_MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') "
        + "or m.startswith(('tui.app', 'tui.widgets', 'tui.screens')))\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_import_linter_contract_holds():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_worker_imports_dspy_without_ipython_and_a_program_still_can():
    code = (
        "import sys\n"
        "from tui.models.dspy_import import import_dspy\n"
        "import_dspy()\n"
        "print('IPython' in sys.modules, 'dspy.evaluate' in sys.modules)\n"
        "import IPython\n"
        "print(type(IPython).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "module"]
