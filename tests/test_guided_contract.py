"""The contract between guidance and samplers (minicfg.guided): an eps-callable may return ``Guided(eps, renoise)``
(x~ from ``eps``, the move to the next lam made with ``renoise``) and may have ``begin(lams)``, called once per run.

Every expected value here is written out by hand from alpha^2 = sigmoid(lam), sigma^2 = sigmoid(-lam), not read
from minicfg's conversions.
"""

import re
from pathlib import Path

import pytest
import torch

from minicfg import guidance, samplers, toy
from minicfg.guided import Guided
from minicfg.schedules import sampling_lams

DT = torch.float64
MIX = toy.three_gaussians(dtype=DT)
COND, UNCOND = toy.eps_fn(MIX, torch.tensor([0, 1, 2, 1, 0, 2])), toy.eps_fn(MIX)

pytestmark = pytest.mark.usefixtures("one_thread")


def _alpha_sigma(lam: float):
    lam = torch.tensor(lam, dtype=DT)
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def _z0(seed: int = 0) -> torch.Tensor:
    return torch.randn(6, 2, dtype=DT, generator=torch.Generator().manual_seed(seed))


def _run(name, eps_fn, lams, **options):
    return samplers.run_sampler(name, eps_fn, _z0(), lams, generator=torch.Generator().manual_seed(5), **options)


@pytest.mark.parametrize("clip_x", [None, (-1.0, 1.0)])
@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_a_renoise_equal_to_eps_is_the_plain_eps_bit_for_bit(name, clip_x):
    """Guided(eps, eps) means "renoise with the eps that predicts x": every sampler gives exactly the plain result,
    clipped or not (the clip moves x~ of most samples at these lams)."""
    lams = sampling_lams(7, dtype=DT)
    plain = _run(name, COND, lams, clip_x=clip_x)
    paired = _run(name, lambda z, lam: Guided(COND(z, lam), COND(z, lam)), lams, clip_x=clip_x)
    assert torch.equal(plain, paired)
    # and the renoise is used: renoising with the unconditional eps changes the result
    other = _run(name, lambda z, lam: Guided(COND(z, lam), UNCOND(z, lam)), lams, clip_x=clip_x)
    assert not torch.allclose(plain, other)


def _one_ddim_step_by_hand(z, l0, l1, clip_x=None):
    """DDIM from l0 to l1 of Guided(COND, UNCOND), then the x-prediction at l1 (a grid of three lams)."""
    a0, s0 = _alpha_sigma(l0)
    a1, s1 = _alpha_sigma(l1)
    x0 = (z - s0 * COND(z, torch.full((6,), l0, dtype=DT))) / a0
    renoise = UNCOND(z, torch.full((6,), l0, dtype=DT))
    if clip_x is None:
        z1 = a1 * x0 + s1 * renoise
    else:  # the clip moves x~; the state alpha x~ + sigma renoise is kept, so the renoise absorbs the move
        xc = x0.clamp(*clip_x)
        z1 = a1 * xc + s1 * (renoise + a0 * (x0 - xc) / s0)
    x1 = (z1 - s1 * COND(z1, torch.full((6,), l1, dtype=DT))) / a1
    return x1 if clip_x is None else x1.clamp(*clip_x)


@pytest.mark.parametrize("clip_x", [None, (-1.0, 1.0)])
def test_ddim_with_a_guided_pair_moves_to_alpha_x_plus_sigma_renoise(clip_x):
    """z' = alpha' x~ + sigma' renoise (CFG++'s DDIM step), x~ from the pair's eps."""
    z = _z0()
    lams = torch.tensor([-2.0, 0.5, 3.0], dtype=DT)
    out = samplers.ddim(lambda z, lam: Guided(COND(z, lam), UNCOND(z, lam)), z, lams, clip_x=clip_x)
    torch.testing.assert_close(out, _one_ddim_step_by_hand(z, -2.0, 0.5, clip_x), rtol=1e-12, atol=1e-12)
    if clip_x is not None:  # the clip acted on this step, so the clipped branch was tested
        a0, s0 = _alpha_sigma(-2.0)
        x0 = (z - s0 * COND(z, torch.full((6,), -2.0, dtype=DT))) / a0
        assert bool((x0.abs() > 1).any())


def test_ancestral_with_a_guided_pair_takes_the_posterior_mean_around_the_renoised_state():
    """Without fresh noise the ancestral step is the posterior mean (paper Eq. 3) of z~ = alpha x~ + sigma renoise:
    e^(lam - lam') (alpha' / alpha) z~ + (1 - e^(lam - lam')) alpha' x~."""
    z = _z0()
    l0, l1 = -1.0, 1.5
    a0, s0 = _alpha_sigma(l0)
    a1, s1 = _alpha_sigma(l1)
    lam0 = torch.full((6,), l0, dtype=DT)
    x0 = (z - s0 * COND(z, lam0)) / a0
    z_tilde = a0 * x0 + s0 * UNCOND(z, lam0)
    r = torch.exp(torch.tensor(l0 - l1, dtype=DT))
    z1 = r * (a1 / a0) * z_tilde + (1 - r) * a1 * x0
    expected = (z1 - s1 * COND(z1, torch.full((6,), l1, dtype=DT))) / a1
    out = samplers.ancestral(lambda z, lam: Guided(COND(z, lam), UNCOND(z, lam)), z,
                             torch.tensor([l0, l1, 4.0], dtype=DT), noise_scale=0.0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


class _Recording:
    """An eps-callable with per-run state: it records begin's grids and the order of calls."""

    def __init__(self):
        self.events = []

    def begin(self, lams):
        self.events.append(("begin", lams.clone()))

    def __call__(self, z, lam):
        self.events.append(("eps", float(lam[0])))
        return COND(z, lam)


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_begin_is_called_once_with_the_grid_before_the_first_evaluation(name):
    fn = _Recording()
    z = _z0().float()
    lams = sampling_lams(5, dtype=DT)  # a float64 grid reaches begin in z's dtype, like eps_fn's lam
    samplers.run_sampler(name, fn, z, lams, generator=torch.Generator().manual_seed(0))
    begins = [e for e in fn.events if e[0] == "begin"]
    assert len(begins) == 1 and fn.events[0][0] == "begin"
    assert begins[0][1].dtype == torch.float32 and torch.equal(begins[0][1], lams.float())
    assert fn.events[1] == ("eps", pytest.approx(float(lams[0])))
    # a second run calls it again (state is per run)
    samplers.run_sampler(name, fn, z, lams, generator=torch.Generator().manual_seed(0))
    assert sum(e[0] == "begin" for e in fn.events) == 2


@pytest.mark.parametrize("bad", [lambda z: z[:, :1], lambda z: z.flatten()])
def test_a_renoise_of_the_wrong_shape_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"eps_fn returned a renoise of shape .* for z of shape \(6, 2\); .*Guided"):
        samplers.ddim(lambda z, lam: Guided(COND(z, lam), bad(z)), _z0(), sampling_lams(3, dtype=DT))


def test_a_pair_that_is_not_two_tensors_is_a_clear_error():
    with pytest.raises(ValueError, match=r"eps_fn returned a ndarray as its renoise, not a tensor"):
        samplers.ddim(lambda z, lam: Guided(COND(z, lam), z.numpy()), _z0(), sampling_lams(3, dtype=DT))
    with pytest.raises(ValueError, match=r"eps_fn returned shape \(6, 1\) for z of shape \(6, 2\)"):
        samplers.ddim(lambda z, lam: Guided(z[:, :1], COND(z, lam)), _z0(), sampling_lams(3, dtype=DT))
    with pytest.raises(ValueError, match=r"eps_fn returned a tuple as its eps, not a tensor"):
        samplers.ddim(lambda z, lam: (COND(z, lam), COND(z, lam)), _z0(), sampling_lams(3, dtype=DT))


# -- the recipe in docs/architecture.md, run from the page -------------------------------------------
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
SECTION = "### Add a guidance method that needs a renoise prediction or per-step state"


def _recipe_code() -> str:
    text = DOCS.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n### ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "the recipe shows a renoise method and a method with per-run state"
    return "\n".join(blocks)


@pytest.fixture
def recipe(registered):
    namespace = {}
    exec(compile(_recipe_code(), str(DOCS), "exec"), namespace)
    return namespace


LABELS = torch.tensor([0, 1, 2, 1, 0, 2])


def test_the_recipes_renoise_method_moves_with_the_unconditional_eps(recipe):
    """Its DDIM step is alpha' x~_CFG + sigma' eps_uncond, written out here with the toy's exact predictions."""
    w, z = 2.0, _z0()
    eps_fn = guidance.build_guidance("renoise_uncond", MIX, LABELS, w)
    a0, s0 = _alpha_sigma(-2.0)
    a1, s1 = _alpha_sigma(0.5)
    lam0, lam1 = torch.full((6,), -2.0, dtype=DT), torch.full((6,), 0.5, dtype=DT)

    def cfg_by_hand(z, lam):
        return (1 + w) * COND(z, lam) - w * UNCOND(z, lam)

    z1 = a1 * (z - s0 * cfg_by_hand(z, lam0)) / a0 + s1 * UNCOND(z, lam0)
    expected = (z1 - s1 * cfg_by_hand(z1, lam1)) / a1
    out = samplers.ddim(eps_fn, z, torch.tensor([-2.0, 0.5, 3.0], dtype=DT))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_the_recipes_momentum_method_starts_afresh_each_run(recipe, name):
    """beta = 0 is Eq. 6; with beta > 0 two runs of one callable agree only because begin resets the state."""
    lams = sampling_lams(6, dtype=DT)
    plain = _run(name, guidance.build_guidance("cfg", MIX, LABELS, 1.5), lams)
    no_momentum = _run(name, guidance.build_guidance("momentum_cfg", MIX, LABELS, 1.5, beta=0.0), lams)
    torch.testing.assert_close(no_momentum, plain, rtol=1e-9, atol=1e-9)
    fn = guidance.build_guidance("momentum_cfg", MIX, LABELS, 1.5, beta=0.8)
    first, second = _run(name, fn, lams), _run(name, fn, lams)
    assert torch.equal(first, second) and not torch.allclose(first, plain, atol=1e-3)
