"""Project files agree with each other: dependencies, README commands, CI script."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = _pyproject()["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "minicfg"
    assert "python=3.11" in env["dependencies"]
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip: section"
    pip = pip_lists[0]
    assert "-e .[dev]" in pip, "environment.yml must install the project itself with its dev extra"
    listed = {p for p in pip if not p.startswith("-e")}
    assert listed == declared, (
        f"only in environment.yml: {sorted(listed - declared)}; only in pyproject.toml: {sorted(declared - listed)}"
    )


def test_runtime_dependencies_cover_the_brief():
    names = {re.split(r"[<>=!~ ]", d)[0] for d in _pyproject()["project"]["dependencies"]}
    assert {"torch", "torchvision", "sympy", "matplotlib", "numpy", "tqdm", "safetensors"} <= names


def test_readme_has_exactly_the_setup_and_test_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = [line.strip() for b in blocks for line in b.splitlines() if line.strip()]
    assert commands == ['pip install -e ".[dev]"', "pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert re.search(rf"^{re.escape(command)}$", ci, re.M), f"CI does not run the README's `{command}`"
    assert "ruff check" in ci


def test_console_script_is_declared():
    assert _pyproject()["project"]["scripts"]["minicfg"] == "minicfg.cli:main"
