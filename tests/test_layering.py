"""The import graph of edmem/ follows edmem/floors.py: no upward import, no import between peers
of one floor, hence no cycle between packages. Reads the source with ``ast`` (imports inside
functions count too), so it needs neither torch nor the modules to import cleanly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edmem.floors import FLOORS, floor_of

PACKAGE = Path(__file__).resolve().parent.parent / "edmem"


def _top(module: str) -> str | None:
    """``edmem.training.loop`` -> ``training``; ``edmem`` (the package itself) -> ``__init__``;
    None outside edmem."""
    parts = module.split(".")
    if parts[0] != "edmem":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, package: Path) -> str:
    """``.../edmem/training/loop.py`` -> ``edmem.training.loop``; a package's ``__init__.py``
    -> the package."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(package: Path, name: str) -> bool:
    return (package / f"{name}.py").is_file() or (package / name / "__init__.py").is_file()


def edmem_imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every edmem import in ``path``, relative ones resolved."""
    me = _module_name(path, package).split(".")
    if me == ["edmem", "__init__"]:
        me = ["edmem"]
    here = me if path.name == "__init__.py" else me[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "edmem":  # `from edmem import x`: a submodule, or a name of edmem/__init__
                found += [(node.lineno, f"edmem.{alias.name}" if _is_module(package, alias.name)
                           else "edmem") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if _top(name) is not None]


def violations(package: Path = PACKAGE) -> list[str]:
    """One line per import that breaks the floors, plus every cycle between packages."""
    problems = []
    edges: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        source = _top(_module_name(path, package))
        where = path.relative_to(package)
        try:
            mine = floor_of(source)
        except KeyError:
            problems.append(f"{where}: edmem.{source} is on no floor (add it to edmem/floors.py)")
            continue
        for line, target in edmem_imports(path, package):
            other = _top(target)
            if other == source:
                continue
            edges.setdefault(source, set()).add(other)
            try:
                theirs = floor_of(other)
            except KeyError:
                problems.append(f"{where}:{line}: imports {target}, which is on no floor")
                continue
            if theirs > mine:
                problems.append(f"{where}:{line}: upward import of {target} (floor {theirs}) "
                                f"from edmem.{source} (floor {mine})")
            elif theirs == mine:
                problems.append(f"{where}:{line}: {target} is a peer of edmem.{source} on floor "
                                f"{mine}; peers must not import each other")
    problems += [f"cycle between packages: {' -> '.join(cycle)}" for cycle in _cycles(edges)]
    return problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of the package graph (each reported once, from its smallest name)."""
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                found.append(path + [start])
            elif nxt not in path and nxt > start:
                walk(start, nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def test_no_upward_peer_or_cyclic_import():
    problems = violations()
    assert not problems, "import floors broken (see edmem/floors.py):\n" + "\n".join(problems)


def test_every_top_level_name_has_a_floor():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    missing = sorted(n for n in names if not any(n in floor for floor in FLOORS))
    assert not missing, f"add to edmem/floors.py: {missing}"


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / "edmem"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


@pytest.mark.parametrize("files, expected", [
    ({"training/__init__.py": "", "training/loop.py": "",
      "inference/__init__.py": "", "inference/predict.py": "from edmem.training.loop import x\n"},
     "inference/predict.py:1: edmem.training.loop is a peer of edmem.inference on floor 5"),
    ({"data/__init__.py": "", "data/x.py": "def f():\n    import edmem.modeling.model\n",
      "modeling/__init__.py": "", "modeling/model.py": ""},
     "data/x.py:2: upward import of edmem.modeling.model (floor 4) from edmem.data (floor 3)"),
    ({"runtime/__init__.py": "", "runtime/a.py": "from edmem import cli\n", "cli.py": ""},
     "runtime/a.py:1: upward import of edmem.cli (floor 9) from edmem.runtime (floor 1)"),
    ({"newpkg/__init__.py": "", "newpkg/a.py": ""}, "is on no floor"),
])
def test_the_check_names_the_offending_import(tmp_path, files, expected):
    problems = violations(_write(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_a_cycle_is_reported():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
