"""The privacy layer is pure: no trio, no SQLAlchemy, nothing of the daemon or the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "permissions"
FORBIDDEN = ("trio", "sqlalchemy", "gatewayd", "profile_store")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any level (inside functions and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_import_nothing_impure(path: Path) -> None:
    """Only policy_file.py reaches into gatewayd, and only for the configuration problem types."""
    impure = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
    if path.name == "policy_file.py":
        assert impure == {"gatewayd.config"}
        source = path.read_text(encoding="utf-8")
        assert "from gatewayd.config import ConfigError, ConfigProblem\n" in source
    else:
        assert impure == set()
