"""envs/*.yaml (conda, per stage) agree with pyproject.toml's dependencies."""

from __future__ import annotations

import re
import tomllib

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
