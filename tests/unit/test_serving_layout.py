"""serving/ stands alone: no imports from the rest of Veritas, and the driver side has no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"veritas", "commands", "workers", "api", "events", "domain", "projections", "sagas"}


def test_serving_imports_nothing_from_the_rest_of_veritas() -> None:
    for path in sorted((ROOT / "serving").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_the_driver_side_does_not_import_torch() -> None:
    code = (
        "import sys, serving, serving.control, serving.app, serving.kafka_ingress, "
        "serving.host, serving.loader, serving.batching\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
