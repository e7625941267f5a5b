"""The sympy symbols shared by all derivations, so tests and notebooks can ``lambdify`` in a known order.

Names follow the paper (Ho & Salimans 2022): ``lam`` is the log-SNR lambda, ``lam_next`` is lambda' with
lambda < lambda' (lambda' is closer to the data), ``z`` is z_lambda and ``z_next`` is z_lambda'.
"""

import sympy as sp

lam = sp.Symbol("lambda", real=True)  #: log-SNR lambda
lam_next = sp.Symbol(r"\lambda'", real=True)  #: log-SNR lambda' > lambda
lam_min = sp.Symbol(r"\lambda_{\min}", real=True)
lam_max = sp.Symbol(r"\lambda_{\max}", real=True)
u = sp.Symbol("u", real=True)  #: schedule time in [0, 1]; u = 0 is data, u = 1 is noise

x = sp.Symbol("x", real=True)  #: a data point (one coordinate)
z = sp.Symbol(r"z_{\lambda}", real=True)  #: the noisy latent z_lambda
z_next = sp.Symbol(r"z_{\lambda'}", real=True)  #: the latent z_lambda' (less noisy)
eps = sp.Symbol(r"\epsilon", real=True)  #: standard normal noise

# generic positive scales, for derivations that do not need them as functions of lambda
alpha = sp.Symbol(r"\alpha_{\lambda}", positive=True)
sigma = sp.Symbol(r"\sigma_{\lambda}", positive=True)
alpha_next = sp.Symbol(r"\alpha_{\lambda'}", positive=True)
sigma_next = sp.Symbol(r"\sigma_{\lambda'}", positive=True)

v = sp.Symbol("v", real=True)  #: reverse-variance interpolation in [0, 1]
w = sp.Symbol("w", real=True)  #: guidance strength (paper's w)
eps_c = sp.Symbol(r"\epsilon_{c}", real=True)  #: conditional prediction eps(z, c)
eps_u = sp.Symbol(r"\epsilon_{\varnothing}", real=True)  #: unconditional prediction eps(z)
grad_log_cls = sp.Symbol(r"\nabla_{z}\log p(c|z)", real=True)  #: a classifier's gradient


def sigmoid(t):
    """The logistic function ``1 / (1 + e^(-t))`` as a sympy expression."""
    return 1 / (1 + sp.exp(-t))
