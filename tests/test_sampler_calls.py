"""Calling a sampler by name: the generator and the options reach the sampler.

Written for the survivors of mutation testing (docs/mutation.md).
"""

import torch

from minicfg import samplers
from minicfg.schedules import sampling_lams


def _zero_eps(z, lam):
    return torch.zeros_like(z)


def test_run_sampler_draws_its_noise_from_the_generator_it_is_given():
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    lams = sampling_lams(5, -5.0, 5.0)
    runs = []
    for global_seed in (1, 2):  # the global RNG differs between the runs; the generator's seed does not
        torch.manual_seed(global_seed)
        runs.append(samplers.run_sampler("ancestral", _zero_eps, z, lams, generator=torch.Generator().manual_seed(7)))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    other = samplers.run_sampler("ancestral", _zero_eps, z, lams, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other, runs[0])


def test_run_sampler_passes_the_options_on():
    # eps = 0 predicts x = z / alpha, far outside [-0.1, 0.1] for this z; clip_x must bound the returned prediction
    z = torch.full((2, 3), 2.0)
    x = samplers.run_sampler("ddim", _zero_eps, z, sampling_lams(3, -2.0, 2.0), clip_x=(-0.1, 0.1))
    assert x.abs().max().item() <= 0.1 + 1e-7
    assert samplers.run_sampler("ddim", _zero_eps, z, sampling_lams(3, -2.0, 2.0)).abs().max().item() > 1.0


def test_an_eps_fn_in_another_dtype_does_not_change_the_samplers_dtype():
    # a network under autocast may answer in float64 or bfloat16; the walk stays in z's dtype
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    lams = sampling_lams(4, -3.0, 3.0)
    for name in samplers.SAMPLERS:
        x = samplers.run_sampler(name, lambda z, lam: 0.1 * z.double(), z, lams,
                                 generator=torch.Generator().manual_seed(0))
        assert x.dtype == torch.float32, name


def test_the_eps_fn_and_the_callback_see_lam_in_zs_dtype():
    # a float64 grid with a float32 state: the network is asked at float32 log-SNRs, one per sample
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    seen = []

    def eps_fn(z, lam):
        seen.append(lam)
        return torch.zeros_like(z)

    samplers.run_sampler("ddim", eps_fn, z, sampling_lams(3, -3.0, 3.0, dtype=torch.float64),
                         callback=lambda step, lam, z, x: seen.append(lam))
    assert len(seen) == 6 and all(lam.dtype == torch.float32 for lam in seen)
    assert [tuple(lam.shape) for lam in seen[::2]] == [(2,)] * 3
