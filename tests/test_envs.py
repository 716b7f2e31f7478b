"""envs/*.yaml (conda, per stage) agree with pyproject.toml's dependencies."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conftest import REPO

CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ ]", spec, maxsplit=1)[0].lower()


def _pyproject() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d): d for d in deps}


def _env(path) -> dict[str, str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    out = {}
    for d in deps:
        if isinstance(d, str) and _name(d) not in NOT_PACKAGES:
            out[CONDA_TO_PYPI.get(_name(d), _name(d))] = d
    return out


def test_every_env_package_is_a_declared_dependency_with_the_same_lower_bound():
    declared = _pyproject()
    for path in sorted((REPO / "envs").glob("*.yaml")):
        for name, spec in _env(path).items():
            if name.startswith("snakemake-executor-plugin"):
                continue
            assert name in declared, f"{path.name}: {name} is not in pyproject.toml"
            bound = re.search(r">=\s*([\w.]+)", spec)
            assert bound and f">={bound.group(1)}" in declared[name], f"{path.name}: {spec} vs {declared[name]}"


def test_the_workflow_env_holds_every_dependency():
    env = _env(REPO / "envs" / "workflow.yaml")
    assert set(_pyproject()) <= set(env)


def test_every_rule_env_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / rel).resolve().is_file(), f"{smk.name}: {rel}"


# --- Every rule's conda env holds what its code imports ----------------------------------------
#
# For each rule with `conda:` and `script:` (or a `shell:` that runs `python -m weightspace.X`),
# the script's import closure is computed from the files as they are now: the script's imports
# (module level and inside functions), every `weightspace` module they reach, recursively, with
# those modules' function-level imports too (they run when the function is called), and the
# package `__init__`s on the way. The third-party top-level names found must be provided by the
# rule's env file. Nothing here knows which module imports what.

SRC = REPO / "src"
LIBRARY = "weightspace"
# Provided to every job without the env listing it: the library itself (src/ on PYTHONPATH, set
# by the Snakefile) and Snakemake (the runner: a script's preamble puts the runner's sys.path,
# with snakemake, at the end of the job's sys.path).
PROVIDED = {LIBRARY, "snakemake"}
# Import name -> the env packages that provide it: its own package first, as envs/*.yaml spell it,
# then packages that hard-depend on it (seaborn requires matplotlib, scikit-learn scipy,
# transformers and datasets huggingface_hub). Add a line when the code imports something new.
IMPORT_PACKAGES = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "pyarrow": ("pyarrow",),
    "torch": ("pytorch", "torch"),
    "transformers": ("transformers",),
    "safetensors": ("safetensors",),
    "datasets": ("datasets",),
    "sklearn": ("scikit-learn",),
    "threadpoolctl": ("threadpoolctl", "scikit-learn"),
    "scipy": ("scipy", "scikit-learn"),
    "seaborn": ("seaborn",),
    "matplotlib": ("matplotlib", "seaborn"),
    "yaml": ("pyyaml",),
    "jsonschema": ("jsonschema",),
    "tqdm": ("tqdm",),
    "huggingface_hub": ("huggingface-hub", "transformers", "datasets"),
}
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _norm(package: str) -> str:
    return package.lower().replace("_", "-")


def _module_file(name: str, src: Path) -> Path | None:
    """The file of module `name` under `src` (a module or a package's __init__), or None."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(k, ast.Name) and k.id in IMPORT_ERRORS for k in kinds):
            return True
    return False


def _imports(tree: ast.AST, package: str | None) -> list[tuple[str, tuple[str, ...], int]]:
    """(absolute module, names imported from it, line) for every import that can run: module
    level, in functions and classes, and `__import__("x")` / `importlib.import_module("x")` with
    a literal name. Left out: imports under `if TYPE_CHECKING:` (never run) and in the body of a
    `try` that catches ImportError (optional by construction). Relative imports are resolved
    against `package` (None for a script, which cannot have them)."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))) and _catches_import_error(node):
            children = [*node.handlers, *node.orelse, *node.finalbody]
        else:
            children = list(ast.iter_child_nodes(node))
            if isinstance(node, ast.Import):
                found.extend((alias.name, (), node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                names = tuple(alias.name for alias in node.names if alias.name != "*")
                if not node.level:
                    found.append((node.module, names, node.lineno))
                elif package is not None:
                    parts = package.split(".")
                    if node.level - 1 < len(parts):
                        base = ".".join(parts[: len(parts) - (node.level - 1)])
                        found.append((f"{base}.{node.module}" if node.module else base, names, node.lineno))
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                callee = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                if callee in {"__import__", "import_module"} and isinstance(node.args[0].value, str):
                    found.append((node.args[0].value, (), node.lineno))
        for child in children:
            visit(child)

    visit(tree)
    return found


@dataclass
class Closure:
    # third-party top-level module -> the import chain that first needs it
    needs: dict[str, list[str]] = field(default_factory=dict)
    # library modules imported but not found under src/ -> the chain that imports them
    missing: dict[str, list[str]] = field(default_factory=dict)
    # library modules reached
    modules: set[str] = field(default_factory=set)


def import_closure(entry: Path | str, src: Path = SRC, library: str = LIBRARY, provided=PROVIDED, label: str | None = None) -> Closure:
    """What running `entry` can import: a script path, or a library module name (`python -m`).
    Breadth-first, so each chain is a shortest one; `label` names a script in the chains."""
    out = Closure()
    queue: deque[tuple[Path, str | None, list[str]]] = deque()

    def reach(module: str, chain: list[str]) -> None:
        # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c.
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in out.modules or name in out.missing:
                continue
            path = _module_file(name, src)
            if path is None:
                out.missing[name] = chain
                continue
            out.modules.add(name)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            queue.append((path, package, [*chain, name]))

    if isinstance(entry, Path):
        if label is None:
            label = entry.relative_to(REPO).as_posix() if entry.is_relative_to(REPO) else str(entry)
        queue.append((entry, None, [label]))
    else:
        reach(entry, [f"python -m {entry}"])
    seen: set[Path] = set()
    while queue:
        path, package, chain = queue.popleft()
        if path in seen:
            continue
        seen.add(path)
        for module, names, line in _imports(ast.parse(path.read_text(), str(path)), package):
            top = module.split(".")[0]
            if top == library:
                # `from weightspace import sub` / `from .pkg import sub`: sub may be a module.
                subs = [f"{module}.{name}" for name in names if _module_file(f"{module}.{name}", src)]
                for target in [module, *subs]:
                    reach(target, [*chain[:-1], f"{chain[-1]} (line {line}: {target})"])
            elif top and top not in sys.stdlib_module_names and top not in provided:
                out.needs.setdefault(top, [*chain[:-1], f"{chain[-1]} (line {line}: {module})"])
    return out


# ---- the rules, from the .smk text ----

_RULE = re.compile(r"^([ \t]*)(?:rule|checkpoint)\s+(\w+)\s*:", re.M)
_USE = re.compile(r"^([ \t]*)use\s+rule\s+(\w+)\s+as\s+(\w+)(\s+with\s*:)?", re.M)
_DIRECTIVE = re.compile(r"^([ \t]+)(\w+)\s*:(.*)$")
_PYTHON_M = re.compile(rf"\bpython3?\s+(?:-\w+\s+)*-m\s+({LIBRARY}(?:\.\w+)*)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _block(lines: list[str], start: int, indent: int) -> list[str]:
    """The lines after lines[start] that are indented deeper than `indent`."""
    out = []
    for line in lines[start + 1 :]:
        if line.strip() and not line.lstrip().startswith("#") and _indent(line) <= indent:
            break
        out.append(line)
    return out


def _directives(body: list[str]) -> dict[str, str]:
    """Directive -> its value's source text, for a rule body (snakefmt layout or one-liners)."""
    first = next((line for line in body if line.strip() and not line.lstrip().startswith("#")), None)
    if first is None:
        return {}
    level = _indent(first)
    out: dict[str, str] = {}
    for i, line in enumerate(body):
        match = _DIRECTIVE.match(line)
        if match and _indent(line) == level:
            out[match.group(2)] = "\n".join([match.group(3), *_block(body, i, level)])
    return out


def _string(value: str) -> str | None:
    """The value if it is one string literal (possibly implicitly concatenated), else None."""
    try:
        tree = ast.parse(textwrap.dedent(value).strip())
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    node = tree.body[0].value
    if isinstance(node, ast.Tuple) and len(node.elts) == 1:  # a trailing comma
        node = node.elts[0]
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _smk_files() -> list[Path]:
    return [p for p in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))] if p.is_file()]


def workflow_rules(files: list[Path] | None = None) -> dict[str, dict]:
    """Rule name -> {"file": the .smk, "directives": {name: value source}}; `use rule a as b
    with:` inherits a's directives (a from this workflow, not from a module)."""
    rules: dict[str, dict] = {}
    uses = []
    for smk in _smk_files() if files is None else files:
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if match := _RULE.match(line):
                body = _block(lines, i, len(match.group(1)))
                rules[match.group(2)] = {"file": smk, "directives": _directives(body)}
            elif match := _USE.match(line):
                body = _block(lines, i, len(match.group(1))) if match.group(4) else []
                uses.append((match.group(2), match.group(3), smk, _directives(body)))
    for parent, name, smk, own in uses:
        if parent in rules:
            rules[name] = {"file": smk, "directives": {**rules[parent]["directives"], **own}}
    return rules


def _env_packages(path: Path) -> set[str]:
    out = set()
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, str):
            out.add(_norm(_name(dep)))
        elif isinstance(dep, dict):  # a pip: section
            out.update(_norm(_name(d)) for d in dep.get("pip", []))
    return out


def _missing_from(env: set[str], closure: Closure, what: str) -> list[str]:
    problems = []
    for module, chain in sorted(closure.needs.items()):
        packages = IMPORT_PACKAGES.get(module)
        if packages is None:
            problems.append(
                f"{what}: imports `{module}`, which IMPORT_PACKAGES in tests/test_envs.py does not map to "
                f"an env package; add it there (and to the env). Chain: {' -> '.join(chain)}"
            )
        elif not env & {_norm(p) for p in packages}:
            problems.append(f"{what}: needs `{packages[0]}` (for `import {module}`), which the env lacks. Chain: {' -> '.join(chain)}")
    for module, chain in sorted(closure.missing.items()):
        problems.append(f"{what}: imports `{module}`, which is not under src/. Chain: {' -> '.join(chain)}")
    return problems


def rule_closures(files: list[Path] | None = None) -> list[tuple[str, Path | None, Closure | None, str]]:
    """(rule, env file, its code's import closure, note) for every rule with a conda env. The
    closure is None where the rule's code cannot be read here (a `run:` block runs in Snakemake's
    own process, not in the env; a shell command other than `python -m weightspace.X`; a script
    in another language); note says why, or what was wrong."""
    out = []
    for name, rule in sorted(workflow_rules(files).items()):
        d, here = rule["directives"], rule["file"].parent
        if "conda" not in d:
            continue
        env = _string(d["conda"])
        if env is None or not env.endswith((".yaml", ".yml")):
            out.append((name, None, None, f"conda: is not a literal .yaml path ({d['conda'].strip()!r})"))
            continue
        env_file = (here / env).resolve()
        if "script" in d:
            script = _string(d["script"])
            if script is None:
                out.append((name, env_file, None, f"script: is not a string literal ({d['script'].strip()!r})"))
            elif script.endswith(".py"):
                out.append((name, env_file, import_closure((here / script).resolve()), "script"))
            else:
                out.append((name, env_file, None, f"skipped: {script} is not Python"))
        elif "shell" in d and (cmd := _string(d["shell"])) is not None and (m := _PYTHON_M.findall(cmd)):
            closure = Closure()
            for module in m:
                part = import_closure(module)
                closure.needs = {**part.needs, **closure.needs}
                closure.missing = {**part.missing, **closure.missing}
            out.append((name, env_file, closure, "shell: python -m"))
        else:
            kind = next((k for k in ("run", "shell", "notebook", "wrapper", "cwl") if k in d), "no code")
            out.append((name, env_file, None, f"skipped: {kind}"))
    return out


def test_every_rule_env_holds_what_its_code_imports():
    problems, checked = [], 0
    for name, env_file, closure, note in rule_closures():
        if env_file is None or (closure is None and not note.startswith("skipped")):
            problems.append(f"rule {name}: {note}; the env check cannot read it (make it a literal)")
            continue
        if not env_file.is_file():
            problems.append(f"rule {name}: {env_file} does not exist")
            continue
        if closure is None:
            continue
        checked += 1
        problems += _missing_from(_env_packages(env_file), closure, f"rule {name} ({env_file.name})")
    assert checked >= 10, f"only {checked} rules with conda: + script: found: the .smk parsing is broken"
    assert not problems, "\n".join(problems)


def _smk_import_source(smk: Path) -> str:
    """The import statements of a .smk file (top level, in functions and run: blocks) as Python,
    each on its own line number (the rest blank), so that chains cite the .smk's lines."""
    lines = smk.read_text().splitlines()
    out = [""] * len(lines)
    start = re.compile(r"^\s*(from\s+[\w.]+\s+import\b|import\s+[\w.]+)")
    i = 0
    while i < len(lines):
        if start.match(lines[i]):
            first = i
            while i + 1 < len(lines) and (
                lines[i].rstrip().endswith("\\") or "\n".join(lines[first : i + 1]).count("(") > "\n".join(lines[first : i + 1]).count(")")
            ):
                i += 1
            text = textwrap.dedent("\n".join(lines[first : i + 1]))
            try:
                ast.parse(text)
            except SyntaxError:
                pass
            else:
                out[first : i + 1] = text.split("\n")
        i += 1
    return "\n".join(out)


def test_the_workflow_env_holds_what_the_snakefile_imports(tmp_path):
    """Snakemake itself imports the library while it plans (common.smk): the workflow env needs
    that closure."""
    env, problems, reached = _env_packages(REPO / "envs" / "workflow.yaml"), [], set()
    for smk in _smk_files():
        entry = tmp_path / f"{smk.name}.py"
        entry.write_text(_smk_import_source(smk))
        closure = import_closure(entry, label=smk.relative_to(REPO).as_posix())
        reached |= closure.modules
        problems += _missing_from(env, closure, f"{smk.relative_to(REPO)} (workflow.yaml)")
    assert reached, "no weightspace import found in the Snakefile/.smk files: the scan is broken"
    assert not problems, "\n".join(problems)


def test_import_closure_follows_the_library_and_nothing_else(tmp_path):
    """The closure on a made-up library: relative, function-level, `from pkg import module`,
    dotted and __init__ imports are followed; TYPE_CHECKING and optional imports are not."""
    lib = tmp_path / "src" / "weightspace"
    (lib / "sub").mkdir(parents=True)
    (lib / "__init__.py").write_text("import json\n")
    (lib / "a.py").write_text("from . import b\nfrom .sub.c import f\n")
    (lib / "b.py").write_text("import numpy as np\n\ndef g():\n    import torch.nn\n")
    (lib / "sub" / "__init__.py").write_text("import yaml\n")
    (lib / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
        "try:\n    import tqdm\nexcept ImportError:\n    tqdm = None\n"
        "def f():\n    from ..d import h\n    return __import__('sklearn.linear_model')\n"
    )
    (lib / "d.py").write_text("class K:\n    def m(self):\n        import seaborn\n")
    script = tmp_path / "script.py"
    script.write_text("import os\nimport snakemake\nfrom weightspace.a import b\nfrom weightspace.gone import x\n")
    closure = import_closure(script, src=tmp_path / "src")
    assert set(closure.needs) == {"numpy", "torch", "yaml", "sklearn", "seaborn"}
    assert closure.modules == {"weightspace", "weightspace.a", "weightspace.b", "weightspace.sub", "weightspace.sub.c", "weightspace.d"}
    assert set(closure.missing) == {"weightspace.gone"}
    assert " -> ".join(closure.needs["seaborn"]) == (
        f"{script} (line 3: weightspace.a) -> weightspace.a (line 2: weightspace.sub.c)"
        " -> weightspace.sub.c (line 9: weightspace.d) -> weightspace.d (line 3: seaborn)"
    )
    assert set(import_closure("weightspace.d", src=tmp_path / "src").needs) == {"seaborn"}


def test_rule_parsing_reads_script_shell_run_and_use_rule(tmp_path):
    rules = tmp_path / "workflow" / "rules"
    rules.mkdir(parents=True)
    smk = rules / "x.smk"
    smk.write_text(
        'rule a:\n    output:\n        "a.txt",\n    conda:\n        "../../envs/analysis.yaml"  # light\n'
        '    script:\n        "../scripts/zoo.py"\n\n\n'
        'use rule a as b with:\n    conda:\n        "../../envs/finetune.yaml"\n\n\n'
        'rule c:\n    conda:\n        "../../envs/data.yaml"\n    shell:\n        "python -m weightspace.lineage {input}"\n\n\n'
        'rule d:\n    conda:\n        "../../envs/data.yaml"\n    run:\n        import torch\n\n\n'
        'rule e:\n    conda:\n        ENVS["data"]\n    script:\n        "../scripts/zoo.py"\n'
    )
    (tmp_path / "workflow" / "scripts").mkdir()
    (tmp_path / "workflow" / "scripts" / "zoo.py").write_text("import numpy\n")
    (tmp_path / "envs").mkdir()
    for env in ("analysis", "finetune", "data"):
        (tmp_path / "envs" / f"{env}.yaml").write_text("dependencies: [numpy]\n")
    found = {name: (env and env.name, closure and set(closure.needs), note) for name, env, closure, note in rule_closures([smk])}
    assert found["a"] == ("analysis.yaml", {"numpy"}, "script")
    assert found["b"] == ("finetune.yaml", {"numpy"}, "script")
    assert found["c"][0] == "data.yaml" and found["c"][2] == "shell: python -m"
    assert found["d"] == ("data.yaml", None, "skipped: run")
    assert found["e"][0] is None and "not a literal" in found["e"][2]


def test_the_dependency_floors_have_the_apis_the_code_uses():
    """pyproject's floors name the first releases with these APIs (torch 2.4, transformers
    4.56); this fails when an installed version lacks one, i.e. when a floor is too low for the
    code or the environment is older than the floor."""
    import inspect

    import torch
    import transformers
    from packaging.version import Version

    assert hasattr(torch, "OutOfMemoryError")  # finetune's OOM handling (torch 2.4)
    assert "device" in inspect.signature(torch.amp.GradScaler.__init__).parameters  # fp16 scaler on any device (torch 2.3)
    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters  # precision: auto (torch 2.4)
    floors = {name: Version(re.search(r">=\s*([\w.]+)", spec).group(1)) for name, spec in _pyproject().items() if ">=" in spec}
    assert floors["torch"] >= Version("2.4") and floors["transformers"] >= Version("4.56")
    assert Version(transformers.__version__) >= floors["transformers"]
    # from_pretrained(dtype=...) (transformers 4.56; before it the argument was torch_dtype)
    source = inspect.getsource(transformers.modeling_utils.PreTrainedModel.from_pretrained)
    assert 'kwargs.pop("dtype"' in source or "dtype:" in inspect.signature(transformers.modeling_utils.PreTrainedModel.from_pretrained).parameters
