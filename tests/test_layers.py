"""The package's layers: every import points down, none closes a circle, every hint resolves.

Imports are read from the source (including those under ``if TYPE_CHECKING:`` and inside
functions), so a dependency cannot hide from this test by being lazy or typing-only.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioworker

PACKAGE = Path(aioworker.__file__).resolve().parent

# Lower number = lower layer. A module may import its own layer and any lower one.
LAYERS: dict[str, int] = {
    "aioworker._types": 0,
    "aioworker._version": 0,
    "aioworker.importer": 0,
    "aioworker.config": 1,
    "aioworker.logs": 2,
    "aioworker.sockets": 2,
    "aioworker.http": 3,
    "aioworker.frontdoor": 3,
    "aioworker.queue": 3,
    "aioworker.supervisor": 4,
    "aioworker.observe": 5,
    "aioworker.launch": 6,
    "aioworker.cli": 7,
    "aioworker.__main__": 8,
}
# The package's own __init__ is the public facade: it may name every layer (lazily).
FACADE = "aioworker"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """Every aioworker module `path` imports, with its line number."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("aioworker"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("aioworker"):
                continue
            for alias in node.names:
                # `from aioworker.x import y` may import the submodule y
                candidate = f"{target}.{alias.name}"
                yield node.lineno, candidate if _is_module(candidate) else target


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in SOURCES:
        name = module_name(path)
        if name != FACADE:
            layer_of(name)


@pytest.mark.parametrize("path", SOURCES, ids=[module_name(p) for p in SOURCES])
def test_imports_point_down(path: Path) -> None:
    name = module_name(path)
    if name == FACADE:
        return
    own = LAYERS[layer_of(name)]
    upward = [
        f"line {line}: {target}"
        for line, target in imports_of(path)
        if target != FACADE and LAYERS[layer_of(target)] > own
    ]
    assert not upward, f"{name} (layer {own}) imports a higher layer: {upward}"


def test_only_the_facade_imports_the_facade() -> None:
    """`from aioworker import X` inside the package would import every layer's facade names."""
    offenders = [
        f"{module_name(path)} line {line}"
        for path in SOURCES
        if module_name(path) != FACADE
        for line, target in imports_of(path)
        if target == FACADE
    ]
    assert not offenders, offenders


def test_no_import_cycle() -> None:
    graph = {module_name(p): {t for _, t in imports_of(p) if t != module_name(p)} for p in SOURCES}
    # a package's __init__ re-exporting its modules is not a cycle with them
    graph = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in graph.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        if node in visiting:
            cycle = [*visiting[visiting.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def public_callables() -> Iterator[tuple[str, object]]:
    for info in pkgutil.walk_packages(aioworker.__path__, "aioworker."):
        if info.name == "aioworker.__main__":
            continue
        module = importlib.import_module(info.name)
        for attr in getattr(module, "__all__", ()):
            value = getattr(module, attr)
            if inspect.isclass(value):
                yield f"{info.name}.{attr}", value
                for method_name, method in vars(value).items():
                    if inspect.isfunction(method) and not method_name.startswith("_"):
                        yield f"{info.name}.{attr}.{method_name}", method
            elif inspect.isfunction(value):
                yield f"{info.name}.{attr}", value


def test_type_hints_resolve() -> None:
    """Every public callable's hints resolve at run time (no name only TYPE_CHECKING knows)."""
    failures = []
    count = 0
    for name, value in public_callables():
        count += 1
        try:
            typing.get_type_hints(value)
        except Exception as exc:
            failures.append(f"{name}: {exc!r}")
    assert count > 50, "the walk found too few public callables"
    assert not failures, "\n".join(failures)
