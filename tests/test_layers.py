"""The layers stay layers: no import cycle among charfix's modules, the imports each layer may not make,
and a README "Layout" that names every module there is (and none that is gone).

The import graph is read from the source (the AST of every module under cli/charfix), so an import
inside a function counts as much as one at the top: a cycle through a lazy import is still a cycle,
it only fails later. Imports under `if TYPE_CHECKING:` never run and are left out: a UI module may
name the type a service returns in an annotation without importing the service (as import-linter's
exclude_type_checking_imports does).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import charfix

PACKAGE = Path(charfix.__file__).parent
ROOT = PACKAGE.parent
README = Path(__file__).parent.parent / "README.md"


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {_name(p) for p in PACKAGE.rglob("__init__.py")}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The charfix modules an import statement loads. `from charfix.x import y` loads the module
    charfix.x.y when there is one, else charfix.x (y is a name in it)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    if node.level:
        base = module.split(".") if module in PACKAGES else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    found = []
    for alias in node.names:
        submodule = f"{origin}.{alias.name}"
        if submodule in MODULES:
            found.append(submodule)
        elif origin in MODULES:
            found.append(origin)
    return found


def imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found: list[Import] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(module, t, node.lineno) for t in _targets(module, node) if t != module)
        visit(node)

    visit(tree)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def find_cycle(graph: dict[str, list[Import]]) -> list[str] | None:
    """One import cycle as the path of modules around it, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once every import below it is seen
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for edge in graph[module]:
            if state.get(edge.target) == "open":
                return path[path.index(edge.target):] + [edge.target]
            if edge.target not in state and (cycle := walk(edge.target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    """The finder itself, on a graph with a cycle (so that the test below can fail)."""
    graph = {"a": [Import("a", "b", 1)], "b": [Import("b", "c", 1)], "c": [Import("c", "a", 9)], "d": []}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": [Import("a", "b", 1)], "b": []}) is None


def test_a_function_level_import_is_in_the_graph():
    # doctor/run.py imports doctor/postgres.py inside run_doctor only.
    assert "charfix.doctor.postgres" in {i.target for i in GRAPH["charfix.doctor.run"]}


def test_no_import_cycle_among_charfix_modules():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _in(module: str, package: str) -> bool:
    return module == f"charfix.{package}" or module.startswith(f"charfix.{package}.")


def violations(layer: str, forbidden: tuple[str, ...], *, allowed: frozenset[str] = frozenset()) -> list[str]:
    return sorted(f"{i.source} imports {i.target} (line {i.line})"
                  for module, edges in GRAPH.items() if _in(module, layer)
                  for i in edges if any(_in(i.target, f) for f in forbidden) and i.target not in allowed)


def test_the_diagnosis_is_pure():
    """docs/diagnosis.md: facts in, a Diagnosis out; no adapter, service or rendering below it."""
    assert violations("diagnosis", ("repository", "storage", "repair", "queries", "commands", "ui", "backends")) == []


def test_the_ui_renders_what_the_read_side_returns_without_importing_it():
    assert violations("ui", ("queries",)) == []


def test_the_ui_renders_what_a_repair_returns_without_importing_it():
    assert violations("ui", ("repair",)) == []


# ui/safe.py is the one place text from a stranger is made terminal-safe (docs/reliability.md, "What
# reaches the terminal"): a leaf on the standard library. The read side cuts a user's name to a
# short excerpt after escaping it, for the messages and hints it builds.
TERMINAL_SAFE = frozenset({"charfix.ui.safe"})


@pytest.mark.parametrize("layer", ["repair", "queries"])
def test_the_services_never_reach_up_to_the_commands_or_the_ui(layer):
    assert violations(layer, ("commands", "ui"), allowed=TERMINAL_SAFE) == []


# -- the README's layout ---------------------------------------------------------------------------


def layout_section() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].splitlines()


def documented_modules(lines: list[str]) -> set[str]:
    """Every `name.py` the layout names, under the package whose entry (`  name/`) it sits below;
    an entry at the top (`  app.py`) ends the package before it."""
    found: set[str] = set()
    package = ""
    for line in lines:
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        first = stripped.split(" ", 1)[0]
        if indent == 2 and first.endswith("/"):
            package = first
        elif indent == 2 and first:
            package = ""
        found.update(package + name for name in re.findall(r"[\w]+\.py\b", line))
    return found


def actual_modules() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}


def test_the_layout_reader_puts_a_module_under_its_package():
    lines = ["cli/charfix/", "  app.py           the app (errors.py)", "  queries/         the read side",
             "    scan.py        pages", "                   (ids.py: prefixes)", "  models.py        models"]
    assert documented_modules(lines) == {"app.py", "errors.py", "queries/scan.py", "queries/ids.py", "models.py"}


def test_the_readme_layout_names_every_module():
    missing = actual_modules() - documented_modules(layout_section())
    assert not missing, f"README.md, Layout: add {', '.join(sorted(missing))}"


def test_the_readme_layout_names_no_module_that_does_not_exist():
    gone = documented_modules(layout_section()) - actual_modules()
    assert not gone, f"README.md, Layout: no such module {', '.join(sorted(gone))}"
