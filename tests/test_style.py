"""The workflow passes Snakemake's linter and snakefmt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, write_config


def test_snakefmt_check():
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "workflow/rules").rglob("*.smk")))]
    done = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_snakemake_lint_is_clean(tiny_assets, tmp_path):
    config = write_config(tmp_path, tiny_assets["config"])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(config), "--lint"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition" in done.stdout + done.stderr


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    """Lint (pyflakes, pycodestyle, import order) and formatting, pyproject.toml's [tool.ruff]."""
    done = subprocess.run([sys.executable, "-m", "ruff", *command, str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
