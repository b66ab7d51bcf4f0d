"""DESIGN.md's dependency rule, checked from the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("catalog", "geo", "etl", "maps", "api")
ALLOWED = {
    "geo": set(),
    "catalog": {"geo"},
    "maps": {"geo"},
    "etl": {"catalog", "geo"},
    "api": {"catalog", "geo", "maps", "etl"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.add((top, node.lineno))
    return found


def test_packages_import_only_what_the_design_allows() -> None:
    violations = []
    checked = 0
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            checked += 1
            for top, line in imported_packages(path):
                if top != pkg and top not in ALLOWED[pkg]:
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert checked > 10
    assert not violations, "dependency rule broken:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from etl.runner import run_job\nimport api.app\n", encoding="utf-8")
    assert {t for t, _ in imported_packages(bad)} == {"etl", "api"}
