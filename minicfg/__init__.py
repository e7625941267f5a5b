"""minicfg: diffusion guidance (classifier and classifier-free) in small, checked pieces.

Modules, from the bottom layer up (``docs/architecture.md`` has the whole plan):

- ``smoke``: smoke mode (``MINICFG_SMOKE``) for quick notebook runs.
- ``schedules``: log-SNR schedules, ``alpha^2 = sigmoid(lam)``, sampling grids.
- ``diffusion``: the forward process, its posterior, x/eps conversions and the training losses.
- ``guidance``: CFG (paper Eq. 6), classifier guidance (Eq. 4), the implicit classifier; the guidance registry.
- ``samplers``: ancestral (Alg. 2) and DDIM samplers of an eps-callable; the sampler registry.
- ``toy``: a Gaussian mixture with exact scores and classifiers at every log-SNR.
- ``jacobian``: is a vector field a gradient? The antisymmetric share of its Jacobian, from random probes.
- ``nets``: the U-Net, the noisy classifier and the evaluation classifier.
- ``data``: the dataset registry (MNIST, CIFAR-10): download, shipped smoke-mode subsets, clear errors.
- ``checkpoint``: the model store: every network saved and loaded as safetensors with its config.
- ``train``: one trainer for every network (EMA, checkpoints, exact resume); objectives and presets.
- ``generate``: guided samples from a network (guidance and sampler from their registries).
- ``sample_files``: samples written as grid figures, PNG and NPZ files (``minicfg sample``).
- ``evaluator``: the clean-image evaluation classifier's training.
- ``metrics``: accuracy, classifier FID, inception score, precision and recall on its features.
- ``zero_shot``: the CFG model as a zero-shot classifier (lowest eps-prediction error; ``minicfg classify``).
- ``sweep``, ``sweep_plots``: the paper's w trade-off experiment, resumable, and its figures.
- ``frontier``: a sweep over seeds summed up, each method's verdict against CFG's frontier, and its figure.
- ``checks``: the autograder checks of the notebooks' exercises; ``assignments``: the nbgrader course around them.
- ``cli``: the ``minicfg`` command line.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
