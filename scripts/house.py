"""The house rules of `src/sedd_cli`, checked from the source (docs/design.md, "Which way imports flow").

    python scripts/house.py            # layering and cycles; exit 1 on a violation
    python scripts/house.py --sizes    # also list files over 400 lines and function bodies over 60

Every module belongs to a layer: the flat core (`config`, `graph`, `model`, ...), one of the stage
packages (`data`, `checkpoints`, `sampling`, `evaluation`, `training`), `cli`, the public facade
(`sedd_cli/__init__.py`, `__main__.py`) or a deprecated re-export shim (`samplers.py`, ...). Rules:

* a module imports only from the layers `ALLOWED` lists for its own (every import counts, also one
  inside a function: a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` are
  for annotations only and are skipped;
* nothing in the library imports `cli`, and nothing but the facade imports a shim;
* the module-level imports have no cycle (a cycle through a package's ``__init__`` included).

Stdlib only, so the check runs before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "sedd_cli"
PACKAGE = "sedd_cli"
STAGES = ("data", "checkpoints", "sampling", "evaluation", "training")
SHIMS = {"samplers": "sampling", "trainer": "training", "evaluate": "evaluation", "checkpoint": "checkpoints"}
FACADE = {"", "__main__"}  # sedd_cli/__init__.py and sedd_cli/__main__.py
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "data": {"core", "data"},
    "checkpoints": {"core", "checkpoints"},
    "sampling": {"core", "checkpoints", "sampling"},
    "evaluation": {"core", "data", "checkpoints", "sampling", "evaluation"},
    "training": {"core", "data", "checkpoints", "sampling", "training"},
    "cli": {"core", *STAGES, "cli"},
    "facade": {"core", *STAGES, "cli", "shim"},
}
MAX_FILE_LINES = 400
MAX_BODY_LINES = 60


@dataclass(frozen=True)
class Import:
    source: str  # dotted module name inside the package, "" for the package itself
    target: str
    line: int
    top_level: bool  # executed when the module is imported (not inside a function)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    head = module.split(".")[0]
    if module in FACADE:
        return "facade"
    if head in STAGES:
        return head
    if head == "cli":
        return "cli"
    if module in SHIMS:
        return "shim"
    return "core"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> tuple[str, list[str]] | None:
    """(base, [base.name, ...]) of a ``from ... import ...``, package-relative; None outside the package."""
    if node.level == 0:
        base = node.module or ""
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            return None
        base = base[len(PACKAGE) + 1 :]
    else:
        parts = module.split(".") if module else []
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    return base, [f"{base}.{a.name}" if base else a.name for a in node.names]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, root: Path, known: set[str]) -> list[Import]:
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, top)
                continue
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.ImportFrom):
                resolved = _resolve(module, is_package, child)
                if resolved is None:
                    continue
                base, names = resolved
                # `from .pkg import sub` depends on the submodule pkg.sub, `from .pkg import name` on pkg
                targets = {n if n in known else base for n in names}
                found.extend(Import(module, t, child.lineno, inner) for t in sorted(targets) if t in known)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    name = alias.name
                    if name == PACKAGE or name.startswith(PACKAGE + "."):
                        t = name[len(PACKAGE) + 1 :] if name != PACKAGE else ""
                        if t in known:
                            found.append(Import(module, t, child.lineno, inner))
            visit(child, inner)

    visit(tree, True)
    return [i for i in found if i.target != module]


def scan(root: Path = ROOT) -> tuple[set[str], list[Import]]:
    files = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in files}
    edges = [imp for p in files for imp in imports_of(p, root, known)]
    return known, edges


def layering_violations(edges: list[Import]) -> list[str]:
    out = []
    for imp in edges:
        src, dst = layer(imp.source), layer(imp.target)
        if src == "shim":
            ok = dst == "core" or SHIMS.get(imp.source) == dst
        else:
            ok = dst in ALLOWED[src]
        if not ok:
            what = f"{src} may import only {', '.join(sorted(ALLOWED.get(src, {'its stage'})))}"
            out.append(f"{imp.source or PACKAGE}:{imp.line} imports {imp.target or PACKAGE} ({dst}): {what}")
    return out


def cycles(known: set[str], edges: list[Import]) -> list[list[str]]:
    """Cycles of the module-level import graph (``from .pkg import name`` is an edge to ``pkg``'s
    ``__init__``, ``from .pkg import sub`` one to the submodule)."""
    graph: dict[str, set[str]] = {m: set() for m in known}
    for imp in edges:
        if imp.top_level:
            graph[imp.source].add(imp.target)
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                found.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    return found


def size_report(root: Path = ROOT) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        n = text.count("\n")
        if n > MAX_FILE_LINES:
            out.append(f"{rel}: {n} lines (guide: {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n_body = body_lines(node)
                if n_body > MAX_BODY_LINES:
                    where = f"{rel}:{node.lineno} {node.name}"
                    out.append(f"{where}: body of {n_body} lines (guide: {MAX_BODY_LINES})")
    return out


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, without its signature (Typer options) and docstring."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str) and len(body) > 1:
            body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", action="store_true", help="also list long files and function bodies")
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    known, edges = scan(args.root)
    problems = layering_violations(edges) + [" -> ".join(c) + ": import cycle" for c in cycles(known, edges)]
    for p in problems:
        print(p)
    if args.sizes:
        for line in size_report(args.root):
            print("size:", line)
    print(f"{len(known)} modules, {len(edges)} imports, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
