"""The suite's own markers are where ci/sanitize.sh needs them.

ci/sanitize.sh deselects `-m 'not rss'`: under ASan, resident memory measures the quarantine
and the shadow memory, not the library. A test that reads RSS without the marker passes in the
normal run and fails only there (it did once: 45.8 KiB per connection against a 32 KiB bound).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _has_mark(node: ast.FunctionDef, name: str) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if ast.unparse(target) == f"pytest.mark.{name}":
            return True
    return False


def _module_marks(tree: ast.Module) -> str:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            return ast.unparse(stmt.value)
    return ""


def _calls(node: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
        for n in ast.walk(node)
    )


def test_every_test_reading_rss_is_marked_rss() -> None:
    unmarked: list[str] = []
    readers = 0
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module_rss = "pytest.mark.rss" in _module_marks(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            if _calls(node, "rss_bytes"):
                readers += 1
                if not (module_rss or _has_mark(node, "rss")):
                    unmarked.append(f"{path.name}::{node.name}")
    assert readers >= 3, "the scan no longer finds the RSS tests it was written for"
    assert unmarked == [], f"read RSS without @pytest.mark.rss: {unmarked}"


def test_rss_is_read_only_through_the_shared_helper() -> None:
    direct = [
        path.name
        for path in sorted(TESTS.glob("*.py"))
        if path.name not in ("helpers.py", Path(__file__).name)
        and "/proc/self/statm" in path.read_text()
    ]
    assert direct == [], f"read /proc/self/statm directly, not via helpers.rss_bytes: {direct}"
