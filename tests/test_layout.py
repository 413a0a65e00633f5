"""The dependency direction of docs/architecture.md, for every package, read from the source with `ast` (module-level
and function-level imports alike, `import x` and `from x import y`):

    service -> search_spaces, db        workers -> search_spaces, db        search_spaces -> workers.models (counting)
    db -> nothing of the others

Routes import neither torch nor ray; the launcher is the only module of service/ that imports ray; service/ imports
workers (and torch) only inside the functions of the named modules that run torch in-process (train, bench,
calibrate, the search benchmark). No two modules import each other at module level (no import cycles).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("db", "search_spaces", "service", "workers")
MAY_IMPORT = {  # package -> the other packages (or subpackages) it may import
    "db": (),
    "search_spaces": ("workers.models",),
    "workers": ("db", "search_spaces"),
    "service": ("db", "search_spaces"),
}
# service modules that run torch in-process: they may import workers and torch, inside functions only
SERVICE_RUNS_TORCH = {"service/cli/run.py", "service/cli/bench.py", "service/cli/plan.py", "service/bench/search.py",
                      "service/cli/evaluate.py"}  # evaluate --local
SEARCH_SPACES_COUNTS = {"search_spaces/plan.py"}  # parameters and MACs through workers.models, inside functions only
SERVICE_RAY = {"service/launcher.py"}


@dataclass(frozen=True)
class Imp:
    file: str  # relative to the repository root
    line: int
    target: str  # dotted module name (x.y for `from x import y` when x.y is a module of this repository)
    lazy: bool  # inside a function

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}{' (in a function)' if self.lazy else ''}"


def _is_module(dotted: str) -> bool:
    p = ROOT.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[Imp]:
    rel, name = str(path.relative_to(ROOT)), _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Imp] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                out.extend(Imp(rel, child.lineno, a.name, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.append(Imp(rel, child.lineno, sub if _is_module(sub) else base, lazy))
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=rel), False)
    return out


def _all_imports() -> list[Imp]:
    return [i for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py")) for i in _imports(f)]


ALL = _all_imports()


def _of(pkg: str) -> list[Imp]:
    return [i for i in ALL if i.file.startswith(pkg + "/")]


def test_the_scanner_sees_lazy_relative_and_from_imports(tmp_path: Path) -> None:
    """The parser the rules rely on: a function-level `from x import y` is seen, lazily, with the module resolved."""
    imps = {(i.target, i.lazy) for i in _imports(ROOT / "search_spaces" / "plan.py")}
    assert ("workers.models", True) in imps
    imps = {i.target for i in _imports(ROOT / "service" / "cli" / "__init__.py")}
    assert {"service.cli.plan", "service.cli.common"} <= imps
    assert len(ALL) > 300  # every package was read


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_imports_only_what_the_architecture_allows(pkg: str) -> None:
    others = set(PACKAGES) - {pkg}
    bad = []
    for i in _of(pkg):
        if i.top not in others:
            continue
        allowed = any(i.target == a or i.target.startswith(a + ".") for a in MAY_IMPORT[pkg])
        if pkg == "service" and i.top == "workers":
            allowed = i.file in SERVICE_RUNS_TORCH and i.lazy
        if pkg == "search_spaces" and i.top == "workers":
            allowed = allowed and i.file in SEARCH_SPACES_COUNTS and i.lazy
        if not allowed:
            bad.append(str(i))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("pkg", ["db", "search_spaces"])
def test_no_torch_or_ray_outside_workers_and_service(pkg: str) -> None:
    bad = [str(i) for i in _of(pkg) if i.top in ("torch", "torchvision", "ray")]
    assert not bad, "\n".join(bad)


def test_routes_import_neither_torch_nor_ray_nor_workers() -> None:
    bad = [str(i) for i in _of("service/routes") if i.top in ("torch", "torchvision", "ray", "workers")]
    assert not bad, "\n".join(bad)


def test_launcher_is_the_only_service_module_importing_ray() -> None:
    bad = [str(i) for i in _of("service") if i.top == "ray" and i.file not in SERVICE_RAY]
    assert not bad, "\n".join(bad)


def test_service_imports_torch_only_lazily_in_the_modules_that_run_it() -> None:
    bad = [str(i) for i in _of("service") if i.top in ("torch", "torchvision")
           and not (i.file in SERVICE_RUNS_TORCH and i.lazy)]
    assert not bad, "\n".join(bad)


def test_no_module_level_import_cycles() -> None:
    """Module-level imports between this repository's modules form no cycle (a package's __init__ importing its
    submodules counts; a submodule's implicit import of its parent package does not)."""
    graph: dict[str, set[str]] = {}
    for i in ALL:
        if i.lazy or i.top not in PACKAGES:
            continue
        src = _module_name(ROOT / i.file)
        if i.target != src and not src.startswith(i.target + "."):  # `from pkg import x` inside pkg: the parent
            graph.setdefault(src, set()).add(i.target)
    cycles, state = [], {}

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                dfs(nxt, [*stack, nxt])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n, [n])
    assert not cycles, "\n".join(cycles)


def test_importing_db_service_app_and_cli_pulls_in_no_torch_ray_or_workers() -> None:
    """At run time too: the API process and the CLI's startup load neither torch nor ray nor workers; db/ alone loads
    none of the other packages."""
    code = (
        "import sys, importlib, pkgutil, db\n"
        "for m in pkgutil.walk_packages(db.__path__, 'db.'):\n"
        "    if '.migrations' not in m.name: importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'service', 'workers', 'search_spaces', 'torch', 'ray'})\n"
        "assert not bad, ('db', bad)\n"
        "import service.app, service.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'workers', 'torch', 'ray'})\n"
        "assert not bad, ('service', bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
