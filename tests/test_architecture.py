"""The import direction of ARCHITECTURE.md, enforced by parsing every import in src/cnnzoo (lazy ones too)."""

import ast
import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "cnnzoo"
CORE = {"registry", "weights", "device", "hub", "files"}  # the bottom: names, weights, files, devices
# What each part may import, besides itself. A top-level module not listed is held to "models"' rule.
MAY_IMPORT = {
    "core": {"layers"},  # the registry turns stochastic-depth keywords into the layers' spec
    "layers": set(),
    "models": {"layers", "core"},
    "data": {"core"},
    "analysis": {"models", "layers", "core"},
    "deploy": {"analysis", "models", "layers", "core"},
    "engine": {"data", "analysis", "deploy", "models", "layers", "core"},
    "reproduce": {"engine", "data", "analysis", "deploy", "models", "layers", "core"},
    "cnnzoo": {"engine", "data", "analysis", "deploy", "models", "layers", "core", "other"},  # the package's __init__
    "cli": {"reproduce", "engine", "data", "analysis", "deploy", "models", "layers", "core", "other", "cnnzoo"},
    "__main__": {"cli"},
}


def part(module: str) -> str:
    """The architectural part of ``cnnzoo.x.y``: its first component, with registry/weights/device as core."""
    first = module.split(".")[1] if "." in module else "cnnzoo"
    if first in CORE:
        return "core"
    if first in MAY_IMPORT:
        return first
    is_module = (SRC / f"{first}.py").is_file() or (SRC / first / "__init__.py").is_file()
    return "other" if is_module else "cnnzoo"  # `from . import __version__` reads the package itself


def imports(path: Path) -> set[str]:
    """Every cnnzoo module that ``path`` imports, at the top or inside a function."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    package = parts if path.name == "__init__.py" else parts[:-1]
    package = package[:-1] if package[-1] == "__init__" else package
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "cnnzoo"}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "cnnzoo":
                continue
            # `from . import registry` imports the module cnnzoo.registry
            found |= {f"{target}.{a.name}" for a in node.names} if node.module is None else {target}
    return found


def importer_part(path: Path) -> str:
    rel = path.relative_to(SRC)
    if rel.parts == ("__init__.py",):
        return "cnnzoo"
    return part("cnnzoo." + rel.with_suffix("").parts[0])


def test_every_import_follows_the_architecture():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        mine = importer_part(path)
        allowed = MAY_IMPORT.get(mine, MAY_IMPORT["models"]) | {mine}
        for target in sorted(imports(path)):
            if part(target) not in allowed:
                wrong.append(f"{path.relative_to(SRC)} ({mine}) imports {target} ({part(target)})")
    assert not wrong, "imports against ARCHITECTURE.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("source, expected", [
    ("from ..engine import train\n", {"cnnzoo.engine"}),
    ("def f():\n    from ..analysis.complexity import trace\n", {"cnnzoo.analysis.complexity"}),
    ("from .. import registry\nimport cnnzoo.cli\n", {"cnnzoo.registry", "cnnzoo.cli"}),
    ("from .drop import StochasticDepth\nimport torch\n", {"cnnzoo.layers.drop"}),
])
def test_the_checker_sees_relative_absolute_and_lazy_imports(tmp_path, monkeypatch, source, expected):
    fake = tmp_path / "cnnzoo" / "layers" / "fake.py"  # a module inside layers/
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "cnnzoo")
    assert imports(fake) == expected


def test_architecture_md_states_these_rules():
    """The table in ARCHITECTURE.md and MAY_IMPORT say the same: the document cannot drift from the test."""
    text = (SRC.parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            allowed = set(re.findall(r"`(\w+)`", cells[3]))
            table[cells[0].strip("`")] = allowed if cells[3] not in ("-",) and "everything" not in cells[3] else set()
    for name, allowed in MAY_IMPORT.items():
        if name in ("cnnzoo", "__main__", "cli"):
            continue
        assert table.get(name) == allowed, name
    assert set(table) == set(MAY_IMPORT) - {"cnnzoo", "__main__"}
    assert "nothing imports it" in text  # the cli
    assert MAY_IMPORT["analysis"].isdisjoint({"engine", "cli", "data"})
