"""The layout shows the pipeline: imports run one way, without cycles, in short modules.

Every import of a spanlytics module counts, wherever it is written: at the top, inside a
function (a lazy import), or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "spanlytics"
MAX_LINES = 400

# From the ground up. A module may import modules of its own layer and of the layers below.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "ground",
        frozenset(
            {
                "__about__",
                "_json",
                "_process",
                "_setting_fields",
                "_throttle",
                "app_routes",
                "body_text",
                "config",
                "durations",
                "exclusions",
                "masking_options",
                "span_attributes",
                "worker",
            }
        ),
    ),
    ("delivery", frozenset({"delivery"})),
    ("capture", frozenset({"capture"})),
    ("consumer", frozenset({"consumer"})),
    ("record", frozenset({"record"})),
    ("masking", frozenset({"masking"})),
    ("destinations", frozenset({"destinations"})),
    ("pipeline", frozenset({"pipeline", "report"})),
    ("otel", frozenset({"otel"})),
    ("entry points", frozenset({"", "cli", "testing", "demo", "dashboard"})),  # "": spanlytics/__init__.py
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, (_, names) in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it where it belongs")


def owning_module(dotted: str) -> str:
    """The module an imported dotted name lives in (``spanlytics.capture.Capture`` -> the package)."""
    while dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted


def imported_modules(module: str) -> Iterator[tuple[str, int]]:
    """(spanlytics module imported, line) for every import statement in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # "from spanlytics.capture import store" imports the module spanlytics.capture.store
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in targets:
            if name == "spanlytics" or name.startswith("spanlytics."):
                yield owning_module(name), node.lineno


GRAPH = {module: {target for target, _ in imported_modules(module)} - {module} for module in MODULES}


def test_every_module_has_a_layer_and_the_layers_cover_the_package() -> None:
    assert len(MODULES) > 40  # the walk found the package
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_pipeline(module: str) -> None:
    own = layer_of(module)
    against = [
        f"line {line}: {target} ({LAYERS[layer_of(target)][0]})"
        for target, line in imported_modules(module)
        if layer_of(target) > own
    ]
    assert not against, f"{module} ({LAYERS[own][0]}) imports against the flow: {against}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over module imports: none larger than one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_checker_sees_lazy_and_type_checking_imports() -> None:
    # spanlytics.pipeline imports record at the top; exclusions imports config only for types
    assert "spanlytics.record" in GRAPH["spanlytics.pipeline"]
    assert "spanlytics.config" in GRAPH["spanlytics.exclusions"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"
