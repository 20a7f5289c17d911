"""The layers, lowest first, in one written-down order: a module imports only from its own layer or
lower ones, and no two top-level packages import each other. (An AST walk over every module of the
project; `if TYPE_CHECKING:` imports count too.)"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from config.settings import ROOT

# Lowest first. Each unit is a top-level package, except the composition root: veritas.bootstrap
# sits below the entrypoints that call it, and the rest of `veritas` (CLI, demo, lifecycle) on top.
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("configuration", frozenset({"config"})),
    ("events and messages", frozenset({"events"})),
    ("domain", frozenset({"domain"})),
    (
        "adapters and ML (torch, Ray, Evidently)",
        frozenset({"infra", "ml", "serving", "monitoring"}),
    ),
    ("service layer", frozenset({"commands", "projections", "sagas", "steps"})),
    ("composition root", frozenset({"veritas.bootstrap"})),
    ("entrypoints", frozenset({"workers", "api"})),
    ("CLI and lifecycle", frozenset({"veritas"})),
]
LAYER = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
SKIP = {"tests", "bench", "examples", ".venv", "var", "schemas", ".cache"}


def _unit(module: str) -> str | None:
    if module == "veritas.bootstrap" or module.startswith("veritas.bootstrap."):
        return "veritas.bootstrap"
    top = module.split(".")[0]
    return top if top in LAYER else None


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        if _unit(name) is not None:
            out[name] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level or None]
                found.add(".".join([*base, node.module or ""]).rstrip("."))
            elif node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in _modules().items():
        src = _unit(module)
        assert src is not None
        for target in _imports(path, module):
            dst = _unit(target)
            if dst is not None and dst != src:
                edges[(src, dst)].append(f"{module} imports {target}")
    return edges


def test_every_top_level_package_has_a_layer() -> None:
    tops = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in SKIP
    }
    assert tops <= set(LAYER) | {"veritas"}, f"give these a layer: {sorted(tops - set(LAYER))}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        why for (src, dst), whys in _edges().items() if LAYER[dst] > LAYER[src] for why in whys
    ]
    assert upward == [], "\n".join(sorted(upward))


def test_no_two_top_level_packages_import_each_other() -> None:
    edges = _edges()
    mutual = sorted(
        f"{a} <-> {b}: {edges[(a, b)][0]}; {edges[(b, a)][0]}"
        for a, b in edges
        if (b, a) in edges and a < b
    )
    assert mutual == [], "\n".join(mutual)


def test_the_walk_sees_the_known_shape() -> None:
    # The test itself: it finds real edges in both directions of the rule.
    edges = _edges()
    assert ("commands", "domain") in edges and ("workers", "veritas.bootstrap") in edges
    assert ("domain", "commands") not in edges
