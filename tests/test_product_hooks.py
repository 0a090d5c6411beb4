"""Nothing in the product exists only for tests: crash points and the like are injected from outside
the process (tests/crashing.py), never switched on by a variable the product reads."""

from __future__ import annotations

import ast
from pathlib import Path

PRODUCT = Path(__file__).parent.parent / "cli" / "charfix"


def test_nothing_in_the_product_reads_a_test_only_variable():
    named = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "CHARFIX_TEST" in node.value:
                named.append(f"{path.relative_to(PRODUCT)}:{node.lineno}")
    assert list(PRODUCT.rglob("*.py")) and named == []
