"""The source files a pipeline step runs, read from the code itself (no list to keep up to date).

The workflow declares them as a rule's inputs, so editing a module reruns exactly the jobs whose
step (or backend) imports it, directly or through other modules of this package. Imports are
found statically with ``ast``: every ``import cnnbench...`` and ``from ... import ...`` anywhere
in a module, lazy ones inside functions included, and the packages each imported module lives in
(importing ``cnnbench.ops.loops`` runs ``cnnbench/ops/__init__.py`` first). Templates a module
loads with ``jinja2.PackageLoader(package, folder)`` count too. What is imported by a computed
name (``cnnbench.backends.load`` picks a backend's module at run time) is named by the caller.

Standard library only: the Snakefile imports it before any job runs.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "cnnbench"
ROOT = Path(__file__).resolve().parents[1]  # src/cnnbench


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (a package's ``__init__.py``), or None if it is not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = ROOT.joinpath(*name.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def source_files(*modules: str) -> list[Path]:
    """Every file that running ``modules`` (``python -m`` names) reads from this package, sorted."""
    files: set[Path] = set()
    for name in modules:
        if module_file(name) is None:
            raise ValueError(f"{name} is not a module of {PACKAGE} (looked under {ROOT})")
        files |= _closure(name)
    return sorted(files)


@functools.cache
def _closure(module: str) -> frozenset[Path]:
    seen: set[str] = set()
    pending = [module]
    files: set[Path] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        imported, data = _scan(path, name)
        files |= data
        pending += imported
        pending += _packages(name)
    return frozenset(files)


def _packages(name: str) -> list[str]:
    """The packages Python imports before module ``name``: cnnbench, cnnbench.ops, ..."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


@functools.cache
def _scan(path: Path, name: str) -> tuple[tuple[str, ...], frozenset[Path]]:
    """The modules of this package that ``path`` (module ``name``) imports, and the template
    files it loads."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported: list[str] = []
    data: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            imported.append(base)
            # `from package import module` imports the submodule; a plain name is in `base`
            imported += (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _called(node) == "PackageLoader":
            data |= _templates(node)
    return tuple(n for n in imported if module_file(n) is not None), frozenset(data)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _called(node: ast.Call) -> str | None:
    function = node.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else None


def _templates(node: ast.Call) -> set[Path]:
    """Every file under ``PackageLoader(package, folder)``'s folder, when both are literals."""
    values = [arg.value for arg in node.args[:2] if isinstance(arg, ast.Constant)]
    if len(values) != 2 or not all(isinstance(value, str) for value in values):
        return set()
    package_file = module_file(values[0])
    if package_file is None:
        return set()
    folder = package_file.parent / values[1]
    return {path for path in folder.rglob("*") if path.is_file()}
