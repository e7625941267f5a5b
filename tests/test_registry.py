"""One way to register: the five registries (samplers, guidance methods, data sets, predictions, objectives) are each
a minicfg.registry.Registry, add and look up alike, and refuse a taken name, an unknown name and a misfit entry
with the same messages. And one named default data set, data.DEFAULT_DATASET."""

import ast
from pathlib import Path

import pytest

from minicfg import cli, data, guidance, predictions, samplers, train
from minicfg.registry import Registry

ROOT = Path(__file__).resolve().parents[1]

#: (registry, its kind, its public register function, a built-in name, an entry that does not fit it)
REGISTRIES = {
    "samplers": (samplers.SAMPLERS, "sampler", lambda name, entry: samplers.register_sampler(name)(entry), "ddim",
                 lambda eps_fn, z: z),
    "guidance": (guidance.GUIDANCE, "guidance method", lambda name, entry: guidance.add_guidance(entry), "cfg",
                 lambda model, w: None),
    "datasets": (data.DATASETS, "dataset", lambda name, entry: data.register_dataset(entry), "mnist", object()),
    "predictions": (predictions.PREDICTIONS, "prediction", predictions.register_prediction, "v", object()),
    "objectives": (train.OBJECTIVES, "objective", train.register_objective, "eps", object()),
}
GETTERS = {"samplers": samplers.get_sampler, "guidance": guidance.get_guidance, "datasets": data.get_dataset,
           "predictions": predictions.get_prediction, "objectives": lambda name: train.OBJECTIVES.lookup(name)}


@pytest.fixture
def restored():
    saved = {key: dict(reg) for key, (reg, *_) in REGISTRIES.items()}
    yield
    for key, (reg, *_) in REGISTRIES.items():
        reg.clear()
        reg.update(saved[key])


@pytest.mark.parametrize("key", list(REGISTRIES))
def test_each_registry_adds_and_looks_up_alike(key, restored):
    registry, kind, register, builtin, misfit = REGISTRIES[key]
    assert type(registry) is Registry and registry.kind == kind
    entry = registry[builtin]
    with pytest.raises(ValueError, match=rf"^a {kind} named '{builtin}' is already registered; choose another name"):
        register(builtin, entry)
    with pytest.raises(ValueError, match=rf"^unknown {kind} 'nope'; choose one of \[.*'{builtin}'.*\]$"):
        GETTERS[key]("nope")
    with pytest.raises(ValueError, match=f"^{kind} 'misfit' must"):
        registry.add("misfit", misfit)
    assert "misfit" not in registry and "nope" not in registry
    assert registry.names() == list(registry) and registry.names()[:1] != []


def test_a_record_under_another_name_is_refused(restored):
    record = data.get_dataset("mnist")
    with pytest.raises(ValueError, match="under its own name"):
        data.DATASETS.add("digits", record)


def test_registry_add_lookup_and_decorator():
    reg = Registry("widget")
    assert reg.add("a", 1) == 1 and reg.lookup("a") == 1

    @reg.decorator("b")
    def b():
        return 2

    assert reg.lookup("b") is b and reg.names() == ["a", "b"]
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="non-empty string name"):
            reg.add(bad, 0)
    with pytest.raises(ValueError, match=r"unknown widget 'c'; choose one of \['a', 'b'\]"):
        reg.lookup("c")


# -- one named default data set ------------------------------------------------------------------
def _string_constants(path: Path, value: str) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and node.value == value]


def test_the_default_data_set_is_named_once():
    """Only minicfg/data.py spells "mnist" (the record, its loader and DEFAULT_DATASET); every other module's
    default reads data.DEFAULT_DATASET."""
    spelled = {str(p.relative_to(ROOT)): lines for p in sorted((ROOT / "minicfg").glob("*.py"))
               if (lines := _string_constants(p, "mnist"))}
    assert set(spelled) == {"minicfg/data.py"}, spelled
    assert data.DEFAULT_DATASET in data.DATASETS


def test_the_commands_default_to_the_named_data_set(monkeypatch):
    monkeypatch.setattr(data, "DEFAULT_DATASET", "cifar10")
    parser = cli.build_parser()
    assert parser.parse_args(["download"]).dataset == ["cifar10"]
    assert parser.parse_args(["train", "--out", "o"]).dataset == "cifar10"
    args = parser.parse_args(["sample", "--out", "x.png"])
    assert args.dataset is None and cli._model_dataset(args) == "cifar10"
