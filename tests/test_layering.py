"""The dependency direction of the tree (style.md rule 14), checked on the source's imports:
converters import nothing of docker2aci or runner; nothing imports the CLI (but the
entry points: ``__main__.py``, the console script's ``console.py``); the runner
imports no source or registry code; of docker2aci, only the CLI and the pre-run hook
(``prerun.py``: convert, then hand the ACI to the runner) import the runner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """Absolute module names imported by one file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(ROOT).with_suffix("").parts
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level])
                if path.name == "__init__.py":
                    base = list(here[: len(here) - node.level + 1])
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


def _package_imports(package: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): _imports(p, package) for p in (ROOT / package).rglob("*.py")}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        pytest.param("converters", ("docker2aci", "runner"), id="converters-are-pure"),
        pytest.param("docker2aci", ("docker2aci.cli",), id="nothing-imports-the-cli"),
        pytest.param("runner", ("docker2aci.sources", "docker2aci.registry", "docker2aci.pipeline",
                                "docker2aci.cli"), id="runner-takes-an-aci"),
    ],
)
def test_import_direction(package: str, forbidden: tuple[str, ...]) -> None:
    offending = []
    for file, names in _package_imports(package).items():
        if file.endswith(("cli.py", "__main__.py", "console.py")):  # the CLI, and its entry points
            continue
        for name in names:
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offending.append(f"{file} imports {name}")
    assert offending == []


def test_the_checker_sees_relative_imports() -> None:
    names = _imports(ROOT / "docker2aci" / "pipeline.py", "docker2aci")
    assert "docker2aci.sources" in names and "converters.rootfs" in names
