"""Seeded sampling from the shipped weights gives the same pixels release after release.

These numbers were recorded from ``generate`` before the registries refactor (issue 17) and must not
move when code is reorganised: a change here means a behaviour change, not a tidy-up. The tolerance
allows for float32 differences between CPUs (different SIMD kernels), not for a different algorithm:
an off-by-one in the noise seed, the lam grid or the guidance formula moves these values by 0.1 or more.
They were recorded with the eps-prediction weights that shipped as the default model then, and ship now
as the ``paper_model`` (``minicfg/weights/mnist_eps.safetensors``, unchanged). The rows of the default v model
(``mnist.safetensors``) and of the CIFAR-10 model (``cifar10.safetensors``) were recorded in issue 29 with the code
of then; CIFAR-10's images have 3,072 values, so its sums get four times the tolerance.
"""

import pytest
import torch

from minicfg.checkpoint import load_model
from minicfg.generate import generate

PINNED = {
    "cfg w=1 ancestral": (
        dict(w=1.0, sampler="ancestral"),
        [-491.952515, -679.422058, -493.109283, -504.888184, -519.503845,
         -414.385040, -441.453583, -542.807617, -256.971680, -584.616638],
        [-0.996879, 1.000000, 0.911250, 1.000000, 0.866601, 0.642547, 0.826380, -0.983905, 0.950528, -0.460122],
    ),
    "cfg w=3 ddim": (
        dict(w=3.0, sampler="ddim"),
        [-371.958160, -647.944092, -422.865906, -388.559998, -409.912231,
         -220.073639, -320.553589, -336.641785, -248.113876, -319.908966],
        [-0.990937, 0.974460, 0.938231, 0.986794, 0.424624, 0.988507, 0.927682, -0.828298, 0.785327, 0.981223],
    ),
    "cfg per-sample w ancestral": (
        dict(w="linspace", sampler="ancestral"),
        [-555.941650, -689.787659, -547.044861, -521.891113, -521.556824,
         -414.440857, -427.456787, -534.244019, -235.471069, -567.958923],
        [-0.994490, 1.000000, 0.852670, 1.000000, 0.850051, 0.599315, 0.905095, -0.987754, 0.954424, -0.258769],
    ),
    # re-recorded when the noisy classifier was retrained wider (issue 18); the CFG rows above did not move
    "classifier w=2 ancestral": (
        dict(w=2.0, guidance="classifier", sampler="ancestral"),
        [-555.192261, -685.477295, -662.858032, -583.250122, -573.113770,
         -557.829468, -550.834839, -612.498108, -424.017578, -649.562927],
        [-0.987005, 1.000000, 0.965911, 0.934000, 0.950839, -0.419798, -0.817441, -0.969903, 0.942423, -0.714533],
    ),
}


#: the shipped default (v-prediction) MNIST model and the CIFAR-10 model, same seed and steps as above
PINNED_V = {
    "v cfg w=1 ancestral": (
        dict(w=1.0, sampler="ancestral"),
        [-460.122406, -683.778931, -530.635498, -568.046509, -562.978882,
         -526.404419, -517.106567, -556.768250, -385.892548, -607.545410],
        [-0.977968, 1.000000, 0.077233, 1.000000, 0.837151, 0.363020, -0.163159, -1.000000, 0.934288, -0.822848],
    ),
    "v cfg w=3 ddim": (
        dict(w=3.0, sampler="ddim"),
        [-381.569275, -681.137390, -489.684631, -495.341248, -543.652344,
         -430.180603, -504.540741, -498.758850, -554.929382, -543.945557],
        [-0.988867, 1.000000, -0.711853, 0.771186, -0.320620, -0.927096, 0.985392, -1.000000, 0.214847, 0.914590],
    ),
}
PINNED_CIFAR10 = {
    "cifar10 cfg w=3 ancestral": (
        dict(w=3.0, sampler="ancestral"),
        [1054.039062, -241.286240, -363.321777, -499.858673, -783.996704,
         -366.509216, -1328.247803, -180.186829, 563.240295, -466.293213],
        [-0.661278, 0.166585, -0.706897, 0.125943, -0.178495, -0.870874, 0.369016, 0.177324, 0.505229, -0.325667],
    ),
    "cifar10 cfg w=1 ddim": (
        dict(w=1.0, sampler="ddim"),
        [485.705872, 301.522644, 53.036144, -464.413879, -313.553680,
         88.317352, -837.966553, 84.456734, 196.849228, -3.909391],
        [-0.054046, -0.438765, 0.295246, 0.255914, -0.197996, -0.132508, 0.480918, -0.391362, 0.543496, -0.240379],
    ),
}


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_model(role="paper_model")
    classifier, _ = load_model(role="noisy_classifier")
    return model, classifier


@pytest.mark.parametrize("name", list(PINNED_V) + list(PINNED_CIFAR10))
def test_seeded_generate_of_the_default_and_cifar10_models_is_pinned(name):
    dataset, table, size, atol = ("cifar10", PINNED_CIFAR10, 32, 0.2) if name in PINNED_CIFAR10 else (
        "mnist", PINNED_V, 28, 0.05)
    kwargs, sums, centre = table[name]
    model, _ = load_model(dataset=dataset)
    x = generate(model, torch.arange(10), n_steps=8, seed=3, **kwargs)
    torch.testing.assert_close(x.sum(dim=(1, 2, 3)), torch.tensor(sums), atol=atol, rtol=0)
    torch.testing.assert_close(x[:, 0, size // 2, size // 2], torch.tensor(centre), atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", list(PINNED))
def test_seeded_generate_is_pinned(name, shipped):
    model, classifier = shipped
    kwargs, sums, centre = PINNED[name]
    kwargs = dict(kwargs)
    if kwargs["w"] == "linspace":
        kwargs["w"] = torch.linspace(0, 2, 10)
    if kwargs.get("guidance") == "classifier":
        kwargs["classifier"] = classifier
    x = generate(model, torch.arange(10), n_steps=8, seed=3, **kwargs)
    torch.testing.assert_close(x.sum(dim=(1, 2, 3)), torch.tensor(sums), atol=0.05, rtol=0)
    torch.testing.assert_close(x[:, 0, 14, 14], torch.tensor(centre), atol=2e-3, rtol=0)
