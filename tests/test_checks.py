"""The exercise checks (minicfg.checks): each passes the notebook's own solution, fails nbgrader's stub with one line,
and fails a typical wrong answer with the hint for that mistake."""

import re
from pathlib import Path

import nbformat
import pytest
import torch
from nbgrader.preprocessors import ClearSolutions

from minicfg import checks, samplers, schedules

ROOT = Path(__file__).resolve().parents[1]

# exercise -> (a typical mistake written into the notebook's solution: old text, new text; the hint it must get)
WRONG = {
    "alpha_sigma": (("torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()",
                     "torch.sigmoid(lam), torch.sigmoid(-lam)"), "alpha^2 used where alpha was meant"),
    "q_sample": (("alpha * x + sigma * eps", "sigma * x + alpha * eps"), "lam order reversed"),
    "log_snr_cosine": (("math.atan(math.exp(-lam_max / 2))\n", "math.atan(math.exp(-lam_min / 2))\n"), None),
    "posterior": (("var = (1 - ratio) * sigma_next**2", "var = (1 - ratio) * schedules.alpha_sigma(lam)[1] ** 2"),
                  "the variance uses sigma_lam^2"),
    "ancestral_step": (("reverse_variance(lam, lam_next, v).sqrt()", "reverse_variance(lam, lam_next, v)"),
                       "the variance used where its square root"),
    "implicit_classifier_grad": (("return -(eps_cond - eps_uncond)", "return (eps_cond - eps_uncond)"), "the sign"),
    "cfg_combination": (("(1 + w) * eps_cond - w * eps_uncond", "w * eps_cond - (w - 1) * eps_uncond"),
            "w used where 1 + w was meant"),
    "classifier_guided_eps": (("eps - w * sigma", "eps + w * sigma"), "the sign"),
    "label_dropout_loss": (("labels = torch.where(drop, torch.full_like(labels, num_classes), labels)", "pass"),
                           "the labels must be dropped"),
    "guidance_scale_to_w": (("return guidance_scale - 1", "return guidance_scale"), "guidance_scale is 1 + w, not w"),
    "ddim_step": (("+ sigma_next * eps", "+ sigma * eps"), "sigma_lam used where sigma_lam_next was meant"),
    "guided_ddim": (("return x_pred", "return z"), "the sampler returns the last prediction x~, not z"),
    "fid_from_stats": (("- 2 * cross", "- cross"), "the cross term has a factor 2"),
    "precision_recall_knn": (("kthvalue(k + 1", "kthvalue(k"),
                             "the k-th nearest neighbour leaves the point itself out"),
    "per_class_recognition": (("hits[labels == c].mean()", "hits[predicted == c].mean()"),
                              "grouped by the predicted class"),
    "interval_cfg": (("(lam >= lam_low) & (lam <= lam_high)", "(lam > lam_low) & (lam < lam_high)"),
                     "the bounds belong to the interval"),
    "zero_shot_predict": (("errors.mean(2).argmin(1)", "errors.argmin(1).mode(1).values"),
                          "a majority vote of the single draws is not the classifier"),
}


def _exercise_cells() -> dict[str, tuple[str, str, str]]:
    """exercise -> (notebook name, solution cell source, test cell source), read from the main notebooks."""
    found = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and cell.cell_type == "code":
                name = meta["grade_id"].removesuffix("_solution")
                found[name] = (path.name, cell.source, cells[i + 1].source)
    return found


CELLS = _exercise_cells()


def _define(source: str, name: str):
    namespace = {}
    exec(compile(source, f"<{name} cell>", "exec"), namespace)  # the cell as the notebook runs it
    return namespace[name]


def _wrong_answer(name: str, substitutions: list[tuple[str, str]]):
    """Exercise ``name`` as the notebook's solution cell defines it, with each (old, new) text substitution made in
    order (each old text must occur once)."""
    source = CELLS[name][1]
    for old, new in substitutions:
        assert source.count(old) == 1, f"the mistake must be made in the notebook's solution: {old!r}"
        source = source.replace(old, new)
    return _define(source, name)


def _stub(source: str) -> str:
    """The cell as nbgrader's ClearSolutions writes it into the student version."""
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"solution": True, "grade": False, "locked": False,
                                                                    "grade_id": "x", "schema_version": 3}})
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {"language": "python", "name": "python3",
                                                                          "display_name": "Python 3"}})
    nb, _ = ClearSolutions().preprocess(nb, {})
    return nb.cells[0].source


def test_every_exercise_has_a_solution_cell_and_a_graded_check_after_it():
    assert set(CELLS) == set(checks.EXERCISES) == set(WRONG)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            meta = cell.metadata.get("nbgrader")
            if not meta or not meta["solution"]:
                continue
            name = meta["grade_id"].removesuffix("_solution")
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, name
            test = cells[i + 1].metadata["nbgrader"]
            assert test["grade"] and test["locked"] and test["points"] > 0 and test["grade_id"] == name
            assert f"checks.check_{name}({name})" in cells[i + 1].source


@pytest.mark.parametrize("name", list(checks.EXERCISES))
def test_check_passes_the_notebook_solution(name, capsys):
    _, solution, _ = CELLS[name]
    checks.EXERCISES[name](_define(solution, name))
    assert re.fullmatch(rf"{name}: all \d+ inputs pass\n", capsys.readouterr().out)


@pytest.mark.parametrize("name", list(checks.EXERCISES))
def test_check_says_not_implemented_yet_for_the_nbgrader_stub(name):
    _, solution, _ = CELLS[name]
    stub = _stub(solution)
    assert "raise NotImplementedError()" in stub and "BEGIN SOLUTION" not in stub
    assert stub.split("# YOUR CODE HERE")[0] == solution.split("### BEGIN SOLUTION")[0]  # signature and docstring kept
    with pytest.raises(AssertionError) as info:
        checks.EXERCISES[name](_define(stub, name))
    assert str(info.value).startswith(f"{name} is not implemented yet") and "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained NotImplementedError


@pytest.mark.parametrize("name", list(checks.EXERCISES))
def test_check_fails_a_typical_wrong_answer_with_its_hint(name):
    _, solution, _ = CELLS[name]
    (old, new), hint = WRONG[name]
    assert solution.count(old) == 1, "the mistake must be made in the notebook's solution"
    wrong = _define(solution.replace(old, new), name)
    with pytest.raises(AssertionError) as info:
        checks.EXERCISES[name](wrong)
    message = str(info.value)
    assert message.startswith(f"{name}: wrong result on the input '")
    assert "inputs: " in message and "expected" in message and "actual:" in message and "got" in message
    if hint is None:  # no written hint for this mistake: the usual ones are listed
        assert "hint: the usual mistakes: " in message
    else:
        assert f"hint: your result matches a known mistake: {hint}" in message


def test_log_snr_cosine_with_lam_min_and_lam_max_exchanged_gets_the_lam_order_hint():
    _, solution, _ = CELLS["log_snr_cosine"]
    swapped = solution.replace("-lam_max / 2", "-LAM_A / 2").replace("-lam_min / 2", "-lam_max / 2")
    wrong = _define(swapped.replace("-LAM_A / 2", "-lam_min / 2"), "log_snr_cosine")
    with pytest.raises(AssertionError, match=r"known mistake: lam order reversed"):
        checks.check_log_snr_cosine(wrong)


def test_a_shape_error_names_the_input_and_the_broadcasting_fix():
    _, solution, _ = CELLS["q_sample"]
    no_reshape = _define(solution.replace("lam = lam.reshape(", "_ = lam.reshape("), "q_sample")
    with pytest.raises(AssertionError) as info:
        checks.check_q_sample(no_reshape)
    message = str(info.value)
    assert message.startswith("q_sample raised RuntimeError on the input 'non-square images (3 x 5 x 7)'")
    assert "shape (B,): reshape it to (B, 1, ..., 1)" in message


def test_float64_inputs_must_give_float64_results():
    with pytest.raises(AssertionError, match=r"returned dtype torch.float32, expected torch.float64"):
        checks.check_alpha_sigma(lambda lam: (torch.sigmoid(lam).sqrt().float(), torch.sigmoid(-lam).sqrt().float()))


def test_the_ancestral_reference_is_the_step_samplers_ancestral_takes():
    """check_ancestral_step's claim: its expected z_next is the library sampler's step, same noise."""
    torch.manual_seed(0)
    z0 = torch.randn(3, 2, dtype=torch.float64)
    lams = torch.tensor([-3.0, -1.0, 2.0], dtype=torch.float64)
    eps_fn = lambda z, lam: 0.3 * z + 0.1 * lam[:, None]
    seen = []
    samplers.ancestral(eps_fn, z0, lams, v=0.3, generator=torch.Generator().manual_seed(7),
                       callback=lambda i, lam, z, x: seen.append(z.clone()))
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    lam, lam_next = lams[:1].expand(3), lams[1:2].expand(3)
    step = checks._ancestral_step(z0, eps_fn(z0, lam), lam, lam_next, noise, 0.3)
    torch.testing.assert_close(step, seen[1], rtol=1e-12, atol=1e-12)


def test_a_non_function_is_refused():
    with pytest.raises(AssertionError, match=r"pass the function itself"):
        checks.check_cfg_combination(None)


# -- no answer by import or delegation ------------------------------------------------------------------------------
# exercise -> a submission that hands the work to the library function the exercise re-implements (a correct answer
# if that were allowed), and the library function named in the refusal
DELEGATIONS = {
    "alpha_sigma": ("from minicfg.schedules import alpha_sigma", "minicfg.schedules.alpha_sigma"),
    "q_sample": ("from minicfg.diffusion import q_sample", "minicfg.diffusion.q_sample"),
    "log_snr_cosine": ("from minicfg.schedules import log_snr_cosine", "minicfg.schedules.log_snr_cosine"),
    "posterior": ("import minicfg.diffusion\n\ndef posterior(z, x, lam, lam_next):\n"
                  "    return minicfg.diffusion.posterior(z, x, lam, lam_next)", "minicfg.diffusion.posterior"),
    "ancestral_step": ("from minicfg.checks import _ancestral_step as ancestral_step",
                       "minicfg.checks._ancestral_step"),
    "implicit_classifier_grad": (
        "from minicfg import guidance, schedules\nfrom minicfg.diffusion import expand_lam\n\n"
        "def implicit_classifier_grad(e_c, e_u, lam):\n"
        "    return guidance.implicit_classifier_grad(e_c, e_u, schedules.alpha_sigma(expand_lam(lam, e_c))[1])",
        "minicfg.guidance.implicit_classifier_grad"),
    "cfg_combination": ("import functools\nfrom minicfg import guidance\n\n"
                        "@functools.wraps(guidance.cfg)\ndef cfg_combination(*args):\n    return guidance.cfg(*args)",
                        "minicfg.guidance.cfg"),
    "classifier_guided_eps": (
        "from minicfg.guidance import classifier_guided_eps as lib\nfrom minicfg import schedules\n"
        "from minicfg.diffusion import expand_lam\n\ndef classifier_guided_eps(eps, grad, lam, w):\n"
        "    return lib(eps, grad, schedules.alpha_sigma(expand_lam(lam, eps))[1], w)",
        "minicfg.guidance.classifier_guided_eps"),
    "label_dropout_loss": (  # the labels made null by the library's drop_labels (p_uncond = 1 where drop is True)
        "import torch\nfrom minicfg import diffusion\n\n"
        "def label_dropout_loss(model, x, labels, lam, eps, drop, num_classes):\n"
        "    labels = torch.where(drop, diffusion.drop_labels(labels, 1.0, num_classes), labels)\n"
        "    return (model(diffusion.q_sample(x, lam, eps), lam, labels).float() - eps).pow(2).mean()",
        "minicfg.diffusion.drop_labels"),
    # the library's metrics and conversion return floats: the delegations turn them into the tensors asked for
    "guidance_scale_to_w": ("import torch\nfrom minicfg.guidance import w_from_guidance_scale as lib\n\n"
                            "def guidance_scale_to_w(s):\n    if not torch.is_tensor(s):\n        return lib(s)\n"
                            "    return torch.tensor([lib(float(v)) for v in s.flatten()], dtype=s.dtype)"
                            ".reshape(s.shape)", "minicfg.guidance.w_from_guidance_scale"),
    "fid_from_stats": ("import torch\nfrom minicfg import metrics\n\ndef fid_from_stats(mu1, cov1, mu2, cov2):\n"
                       "    return torch.tensor(metrics.frechet_distance(mu1, cov1, mu2, cov2), dtype=mu1.dtype)",
                       "minicfg.metrics.frechet_distance"),
    "precision_recall_knn": ("import torch\nfrom minicfg.metrics import precision_recall as lib\n\n"
                             "def precision_recall_knn(real, fake, k):\n    p, r = lib(real, fake, k)\n"
                             "    return torch.tensor(p, dtype=real.dtype), torch.tensor(r, dtype=real.dtype)",
                             "minicfg.metrics.precision_recall"),
}


def _without_tripwires(monkeypatch):
    """Make the checks trust delegation again (to show that a submission is right but for delegating)."""
    monkeypatch.setattr(checks, "_tripwires", lambda exercise, library: {})
    monkeypatch.setattr(checks, "_delegated_to", lambda fn, library: None)


@pytest.mark.parametrize("name", list(DELEGATIONS))
def test_delegating_to_the_library_function_scores_nothing(name, monkeypatch, capsys):
    source, library = DELEGATIONS[name]
    with pytest.raises(AssertionError) as info:
        checks.EXERCISES[name](_define(source, name))
    assert str(info.value) == (f"{name}: write {name} yourself; the library's own {library} is not allowed here: this "
                               f"exercise re-implements it (torch and the helpers the exercise names are fine)")
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    _without_tripwires(monkeypatch)  # the same submission passes when delegation is not refused: it is only that
    checks.EXERCISES[name](_define(source, name))
    assert capsys.readouterr().out.startswith(f"{name}: all ")


ALPHA_SIGMA_DELEGATIONS = {
    "the library's function itself": "from minicfg.schedules import alpha_sigma",
    "a functools.partial of it": "import functools\nfrom minicfg import schedules\n"
                                 "alpha_sigma = functools.partial(schedules.alpha_sigma)",
    "an alias imported before, wrapped": "from minicfg.schedules import alpha_sigma as lib\n\n"
                                        "def alpha_sigma(lam):\n    return lib(lam)",
    "a call through the module": "import minicfg.schedules\n\n"
                                 "def alpha_sigma(lam):\n    return minicfg.schedules.alpha_sigma(lam)",
    "a library function that calls it inside": "import torch\nfrom minicfg import diffusion\n\ndef alpha_sigma(lam):\n"
        "    return diffusion.q_sample(torch.ones_like(lam), lam, torch.zeros_like(lam)), "
        "diffusion.q_sample(torch.zeros_like(lam), lam, torch.ones_like(lam))",
    "a function made from its code": "import types\nfrom minicfg import schedules\n"
        "alpha_sigma = types.FunctionType(schedules.alpha_sigma.__code__, schedules.alpha_sigma.__globals__)",
    "an error it raised, caught and re-raised": "from minicfg import schedules\n\ndef alpha_sigma(lam):\n"
        "    try:\n        return schedules.alpha_sigma(lam)\n    except RuntimeError as err:\n"
        "        raise ValueError('no luck') from err",
}


@pytest.mark.parametrize("how", list(ALPHA_SIGMA_DELEGATIONS))
def test_every_way_of_reaching_the_library_alpha_sigma_is_refused(how):
    with pytest.raises(AssertionError, match=r"^alpha_sigma: write alpha_sigma yourself; the library's own "
                                             r"minicfg\.schedules\.alpha_sigma is not allowed here"):
        checks.check_alpha_sigma(_define(ALPHA_SIGMA_DELEGATIONS[how], "alpha_sigma"))
    # and the library works again afterwards, with its own code
    alpha, sigma = schedules.alpha_sigma(torch.tensor([0.0]))
    assert alpha.item() == pytest.approx(0.5**0.5) and sigma.item() == pytest.approx(0.5**0.5)


def test_the_library_is_restored_when_the_student_function_fails_otherwise():
    original = schedules.alpha_sigma.__code__
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        checks.check_alpha_sigma(lambda lam: 1 / 0)
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_q_sample(_define(_stub(CELLS["q_sample"][1]), "q_sample"))
    assert schedules.alpha_sigma.__code__ is original


def test_reimplements_names_a_module_level_function():
    with pytest.raises(ValueError, match=r"reimplements='minicfg.schedules.alpha_sigma': expected 'module.path:fun"):
        checks._check("x", lambda lam: lam, [checks.Case("one", (torch.zeros(1),))], lambda lam: lam, ("x",), [],
                      reimplements=("minicfg.schedules.alpha_sigma",))
