"""One record per guidance method (guidance.GuidanceMethod: name, builder, the networks it needs), and no import
cycle: the formulas and the variants sit below the registry, which imports them."""

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minicfg import guidance
from minicfg.nets import NoisyClassifier
from minicfg.sample_files import load_guidance_networks

ROOT = Path(__file__).resolve().parents[1]


def _module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The minicfg modules that ``path`` imports at module level (imports inside functions are not followed)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minicfg"):
            parts = node.module.split(".")
            found.update(parts[1:2] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("minicfg."))
    return found & modules


def test_no_module_of_minicfg_imports_itself_back():
    """The package's module-level imports form no cycle (guidance <-> guidance_variants was one)."""
    paths = sorted((ROOT / "minicfg").glob("*.py"))
    modules = {p.stem for p in paths}
    graph = {p.stem: _module_level_imports(p, modules) for p in paths}
    assert "guidance_formulas" in graph["guidance_variants"] and "guidance_variants" in graph["guidance"]
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle among minicfg's modules: {' -> '.join(err.args[1])}")


def test_guidance_variants_imports_first_without_the_registry_and_the_registry_has_every_method():
    code = ("import sys\n"
            "import minicfg.guidance_variants as v\n"
            "print('minicfg.guidance' in sys.modules)\n"
            "from minicfg import guidance\n"
            "print(sorted(guidance.GUIDANCE))\n"
            "print(guidance.get_guidance('interval') is v.interval_guidance)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "False", "['apg', 'autoguidance', 'cfg', 'cfg_zero_star', 'cfgpp', 'classifier', 'distilled', 'icg', "
        "'interval', 'rescale', 'w_schedule']", "True"]


def test_every_method_is_one_record_under_its_own_name():
    for name, method in guidance.GUIDANCE.items():
        assert isinstance(method, guidance.GuidanceMethod) and method.name == name
        assert guidance.get_guidance(name) is method.builder
        assert set(method.networks) <= set(method.options)


def test_a_method_names_its_networks_in_its_record_and_the_commands_load_them(registered):
    def probe(model, labels, w, *, judge=None, scale: float = 1.0):
        """A toy method with a network option."""
        return lambda z, lam: z

    guidance.add_guidance(guidance.GuidanceMethod("probe", probe, networks={"judge": "noisy_classifier"}))
    loaded = load_guidance_networks("probe", {"scale": 2.0}, "mnist")
    assert isinstance(loaded["judge"], NoisyClassifier) and loaded["scale"] == 2.0
    assert load_guidance_networks("cfg", {}, "mnist") == {}
    with pytest.raises(ValueError, match=r"networks names \['critic'\], which are not keyword options"):
        guidance.GuidanceMethod("probe2", probe, networks={"critic": "noisy_classifier"})
    with pytest.raises(ValueError, match="must have a builder of the signature"):
        guidance.GuidanceMethod("probe3", lambda model, w: None)
    with pytest.raises(ValueError, match="unknown guidance method 'probe4'"):
        load_guidance_networks("probe4", {}, "mnist")
    assert torch.equal(guidance.build_guidance("probe", None, torch.zeros(1), 0.0)(torch.ones(2), None),
                       torch.ones(2))
