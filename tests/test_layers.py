"""The dependency order of dualdc's layers (``dualdc.base.LAYERS``) holds for every module.

Every import counts, also one inside a function (a lazy import still loads the module above).
"""

from __future__ import annotations

import ast
from pathlib import Path

import dualdc
from dualdc.base import LAYERS

SRC = Path(dualdc.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def place(module: str) -> tuple[int, int] | None:
    """(layer, area) of a dualdc module; None for the package root ``dualdc`` (its version only)."""
    for layer, (_, areas) in enumerate(LAYERS):
        for area, prefixes in enumerate(areas):
            if any(module == p or module.startswith(p + ".") for p in prefixes):
                return layer, area
    return None


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every dualdc module ``source`` imports, relative imports resolved."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dualdc"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "dualdc":
                continue
            for alias in node.names:
                # ``from dualdc import render`` imports the module dualdc.render
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if place(sub) is not None and place(base) is None else base))
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Why each import of ``source`` (the text of ``module``) breaks the layer order."""
    here = place(module)
    if here is None:
        return []
    problems = []
    for line, target in imported(source, module, is_package):
        there = place(target)
        if there is None:
            continue
        if there[0] > here[0]:
            problems.append(f"{module}:{line} imports {target}, of the layer above ({LAYERS[there[0]][0]})")
        elif there[0] == here[0] and there[1] != here[1]:
            problems.append(f"{module}:{line} imports {target}, another area of its own layer "
                            f"({LAYERS[here[0]][0]}): side by side, they do not know each other")
    return problems


def all_modules() -> list[tuple[Path, str]]:
    return [(path, module_name(path)) for path in sorted(SRC.rglob("*.py"))]


def test_every_module_has_a_layer() -> None:
    unplaced = [m for _, m in all_modules() if m != "dualdc" and place(m) is None]
    assert unplaced == [], f"modules without a layer in dualdc.base.LAYERS: {unplaced}"


def test_no_module_imports_from_a_layer_above_or_a_neighbour() -> None:
    problems = []
    for path, module in all_modules():
        problems += violations(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert problems == [], "\n".join(problems)


def test_the_check_catches_an_upward_import_even_inside_a_function() -> None:
    source = "def f():\n    from dualdc.cli import load\n    return load\n"
    assert violations(source, "dualdc.ansible.results") == [
        "dualdc.ansible.results:2 imports dualdc.cli, of the layer above (interface)"]
    assert violations("from dualdc import ops\n", "dualdc.base.redact") == [
        "dualdc.base.redact:1 imports dualdc.ops, of the layer above (orchestration)"]
    assert violations("from ..ops import run\n", "dualdc.stacks.site")[0].startswith(
        "dualdc.stacks.site:1 imports dualdc.ops")
    # a neighbour in the same layer: the inventory must not reach into the lab
    assert "another area" in violations("import dualdc.lab.plan\n", "dualdc.inventory")[0]
    # downwards and within an area is fine
    assert violations("from dualdc.model import Zone\nfrom dualdc.ansible import runner\n",
                      "dualdc.ansible.report") == []
