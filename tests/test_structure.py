"""The library's structure (docs/architecture.md): no import circle, plotting only in the
figures module, no file layout in the library, every "which models" question in the plan."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src" / "weightspace"


def _imports(path: Path) -> set[str]:
    """weightspace modules `path` imports anywhere (module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.module and node.module.startswith("weightspace."):
                out.add(node.module.split(".")[1])
            elif node.module == "weightspace":
                out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("weightspace.")}
    return out - {"__init__"}


def _third_party(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in SRC.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_circle_among_the_library_modules_counting_imports_inside_functions():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_figures_module_imports_a_plotting_library():
    plotting = {p.stem for p in SRC.glob("*.py") if _third_party(p) & {"matplotlib", "seaborn"}}
    assert plotting == {"figures"}


def test_the_library_names_no_results_path():
    """Paths belong to the rules: no string in src/ (docstrings aside) starts a results/ path."""
    found = []
    for path in SRC.glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and "results/" in node.value:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.Constant) and "results/" in str(v.value) for v in node.values):
                found.append(f"{path.name}:{node.lineno}: f-string")
    assert not found, found


def test_which_models_questions_live_in_the_plan_only():
    """The plan's functions are defined nowhere else (no second answer that can drift)."""
    import weightspace.plan as plan

    answers = {n for n, v in vars(plan).items() if callable(v) and getattr(v, "__module__", "") == "weightspace.plan" and not n.startswith("_")}
    for path in SRC.glob("*.py"):
        if path.stem == "plan":
            continue
        defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert not defined & answers, f"{path.name} answers {sorted(defined & answers)} again"


def test_the_snakefile_imports_no_torch():
    """Every Snakemake start (and every dry run) pays for what the Snakefile imports: the
    library modules it names import neither torch nor transformers."""
    import re
    import subprocess
    import sys

    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").rglob("*.smk"))])
    modules = sorted(
        set(re.findall(r"^\s*from (weightspace(?:\.\w+)?) import", text, flags=re.M)) | set(re.findall(r"^\s*import (weightspace\.\w+)", text, flags=re.M))
    )
    assert "weightspace.config" in modules and "weightspace.sizing" in modules
    code = f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); " + "; ".join(f"import {m}" for m in modules)
    code += "; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", modules
