"""minicfg: diffusion guidance (classifier and classifier-free) in small, checked pieces.

Modules: ``schedules`` and ``diffusion`` (the log-SNR math core), ``guidance`` and ``samplers``
(functions of an eps-callable), ``data`` (MNIST, CIFAR-10). See the notebooks for the walk-through.
"""

__version__ = "0.1.0"
