"""The house rules on imports, checked on the source: layers run downward, torch stays in loader/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tensorhouse"
#: Top-level applications (not library layers): the CLI and the demo script.
APPS = {"cli.py", "cli_ingest.py", "cli_index.py", "demo.py", "__main__.py", "__init__.py"}
#: A layer may import only from layers below it (and itself); None: anything.
BELOW = {
    "storage": {"storage", "errors", "limits"},
    "format": {"format", "storage", "errors", "types", "limits"},
}
#: Known upward imports, each with its reason (a new one fails until it is listed here).
UPWARD = {
    # Dataset.create_index / nearest / indexes / drop_index delegate, lazily, to the index
    # package that builds on format/ (issue 18's API on the facade).
    ("tensorhouse/format/dataset.py", "tensorhouse.index"),
    # Dataset.to_pandas delegates, lazily, to the pandas adapter (pandas is an optional extra).
    ("tensorhouse/format/dataset.py", "tensorhouse.interop"),
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth (lazy imports count too)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "tensorhouse":
                out += [(node.lineno, f"tensorhouse.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def library_modules() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if not (p.parent == PKG and p.name in APPS)]


def where(p: Path) -> str:
    return str(p.relative_to(PKG.parent))


def test_no_library_module_imports_the_top_level_package() -> None:
    bad = [
        f"{where(p)}:{line}"
        for p in library_modules()
        for line, m in imports(p)
        if m == "tensorhouse"
    ]
    assert not bad, f"import tensorhouse (the top-level package) from a library module: {bad}"


def test_only_loader_imports_torch() -> None:
    bad = [
        f"{where(p)}:{line}"
        for p in library_modules()
        for line, m in imports(p)
        if m.split(".")[0] in ("torch", "torchvision") and p.relative_to(PKG).parts[0] != "loader"
    ]
    assert not bad, f"torch imported outside tensorhouse/loader/: {bad}"


def test_only_the_ray_package_imports_ray() -> None:
    bad = [
        f"{where(p)}:{line}"
        for p in library_modules()
        for line, m in imports(p)
        if m.split(".")[0] == "ray" and p.relative_to(PKG).parts[0] != "ray"
    ]
    assert not bad, f"ray imported outside tensorhouse/ray/: {bad}"


def test_nothing_below_the_cli_imports_it() -> None:
    bad = [
        f"{where(p)}:{line}"
        for p in library_modules()
        for line, m in imports(p)
        if m in ("tensorhouse.cli", "tensorhouse.cli_ingest")
    ]
    assert not bad, f"the CLI imported from a library module: {bad}"


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_layers_import_downward(layer: str) -> None:
    bad = []
    for p in sorted((PKG / layer).rglob("*.py")):
        for line, m in imports(p):
            parts = m.split(".")
            upward = parts[0] == "tensorhouse" and len(parts) > 1 and parts[1] not in BELOW[layer]
            if upward and (where(p), ".".join(parts[:2])) not in UPWARD:
                bad.append(f"{where(p)}:{line} imports {m}")
    assert not bad, f"{layer}/ imports from above it: {bad}"


def test_storage_knows_no_key_layout() -> None:
    # The format's key names (data/, _deletions/, _log/, checkpoints, _refs/) belong to format/.
    for p in sorted((PKG / "storage").rglob("*.py")):
        code = "\n".join(
            n.value
            for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and not n.value.startswith(("\n", " "))
            and len(n.value) < 200
        )
        for key in ("_deletions", "_log/", ".checkpoint", "_refs", "_branches"):
            assert key not in code, f"{where(p)} names the format's key {key!r}"


def test_import_tensorhouse_loads_no_engine_and_no_torch() -> None:
    code = (
        "import sys, tensorhouse as th; th.loader; th.LoaderConfig; "
        "print(sorted(m for m in ('torch', 'duckdb', 'datafusion', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
