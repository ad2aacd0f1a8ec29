"""Denoising diffusion (Ho et al. 2020) over flat action chunks: the noise schedules, the forward process, the
posterior and the reverse sampler, shared by QC's behaviour model (agents/behavior.py) and QSM / DAC
(agents/qsm.py).

Steps are numbered t = 1..T and index 0 is the data itself: `alpha_bars(betas)` prepends beta_0 = 0, so
alpha_bar[0] = 1 and alpha_bar[t - 1] is the level one step cleaner than t at every step, t = 1 included
(QAM's dcgql prepends the same zero). The schedule is float64 NumPy; the forward process reads it at traced
steps (float32), the sampler's loop over t is unrolled with its coefficients as Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# cosine: Nichol & Dhariwal; linear: the VP SDE's beta(t) in [0.1, 20] (QC's behaviour model); vp: the same in
# [0.1, 10] (QAM's dcgql 'vp'); ddpm_linear: Ho et al.'s betas 1e-4..0.02 (QAM's dcgql 'linear')
SCHEDULES = ("cosine", "linear", "vp", "ddpm_linear")
RULES = ("posterior", "ddim", "x0")  # the reverse step, `sample`
NOISE_SCALES = ("posterior", "beta")  # the std of a posterior step's fresh noise, `sample`

EpsFn = Callable[[jax.Array, int], jax.Array]  # (x_t (..., dim), step t) -> predicted noise (..., dim)


def vp_betas(steps: int, beta_max: float, beta_min: float = 0.1) -> np.ndarray:
    """The variance-preserving SDE's linear beta(t) in [beta_min, beta_max] (Song et al. 2021) discretised to
    `steps` steps: alpha_bar_T = exp(-(beta_min + beta_max) / 2) for any T. (steps,)"""
    index = np.arange(1, steps + 1)
    return 1.0 - np.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * index - 1) / steps**2)


def beta_schedule(name: str, steps: int) -> np.ndarray:
    """Noise variances beta_1..beta_T, (steps,), of a schedule in SCHEDULES."""
    if name == "cosine":
        offset = 0.008
        alpha_bars = np.cos((np.arange(steps + 1) / steps + offset) / (1 + offset) * np.pi / 2) ** 2
        return np.minimum(1.0 - alpha_bars[1:] / alpha_bars[:-1], 0.999)
    if name == "linear":
        return vp_betas(steps, 20.0)
    if name == "vp":
        return vp_betas(steps, 10.0)
    if name == "ddpm_linear":
        return np.linspace(1e-4, 2e-2, steps)
    raise ValueError(f"diffusion_schedule must be one of {SCHEDULES}, got {name!r}")


def alpha_bars(betas: np.ndarray) -> np.ndarray:
    """Signal levels alpha_bar_0..alpha_bar_T (steps + 1,): the cumulative product of 1 - beta with beta_0 = 0
    prepended, so alpha_bar_0 = 1."""
    return np.cumprod(1.0 - np.append(0.0, betas))


def forward(x0: jax.Array, eps: jax.Array, alpha_bar: jax.Array) -> jax.Array:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, a draw of q(x_t | x0) for caller-drawn eps.

    x0, eps: (batch, dim); alpha_bar: (batch, 1), the level of each row's step.
    """
    return jnp.sqrt(alpha_bar) * x0 + jnp.sqrt(1.0 - alpha_bar) * eps


def predicted_x0(x: jax.Array, eps: jax.Array, alpha_bar: float) -> jax.Array:
    """The clean chunk that x_t and the predicted noise imply:
    (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return (x - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)


def posterior_mean(x0: jax.Array, x: jax.Array, betas: np.ndarray, t: int) -> jax.Array:
    """The mean of q(x_{t-1} | x_t, x0):
    (sqrt(alpha_bar_{t-1}) beta_t x0 + sqrt(1 - beta_t) (1 - alpha_bar_{t-1}) x_t) / (1 - alpha_bar_t).
    betas: beta_1..beta_T."""
    levels = alpha_bars(betas)
    beta, alpha_bar, alpha_bar_prev = float(betas[t - 1]), float(levels[t]), float(levels[t - 1])
    x0_coef = math.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar)
    xt_coef = math.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    return x0_coef * x0 + xt_coef * x


def posterior_variance(betas: np.ndarray, t: int) -> float:
    """The variance of q(x_{t-1} | x_t, x0): beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t); 0 at t = 1."""
    levels = alpha_bars(betas)
    return float(betas[t - 1]) * (1.0 - float(levels[t - 1])) / (1.0 - float(levels[t]))


def sample(
    eps_fn: EpsFn,
    x: jax.Array,
    step_noise: jax.Array | None,
    betas: np.ndarray,
    *,
    rule: str = "posterior",
    clip_x0: bool = True,
    noise_scale: str = "posterior",
    clip_steps: bool = False,
) -> jax.Array:
    """The reverse process from x_T = `x` down to x_0, t = T..1, each step predicting the noise eps_fn(x_t, t)
    and the clean chunk x0 = predicted_x0 (clipped to [-1, 1] where `clip_x0`), then by `rule`:
      'posterior': x_{t-1} = posterior_mean(x0, x_t) + std_t z_t, std_t = sqrt(posterior_variance) (Ho et
                   al.'s sigma^2 = beta~) or sqrt(beta_t) (their sigma^2 = beta) by `noise_scale`; no noise
                   at t = 1;
      'ddim':      x_{t-1} = sqrt(alpha_bar_{t-1}) x0 + sqrt(1 - alpha_bar_{t-1}) eps (eta = 0, no noise);
      'x0':        x_{t-1} = x0 + std_t z_t, the jump to the predicted chunk that QAM's dcgql sampler takes
                   without clip_sampler_before;
    and, where `clip_steps`, x_{t-1} clipped to [-1, 1]. The result is not clipped further.

    x: (..., dim); step_noise: (T, ..., dim), z_t = step_noise[t - 1] (None for 'ddim');
    betas: beta_1..beta_T.
    """
    if rule not in RULES or noise_scale not in NOISE_SCALES:
        raise ValueError(f"rule must be one of {RULES} and noise_scale one of {NOISE_SCALES}")
    levels = alpha_bars(betas)
    for t in range(len(betas), 0, -1):
        eps = eps_fn(x, t)
        x0 = predicted_x0(x, eps, float(levels[t]))
        if clip_x0:
            x0 = jnp.clip(x0, -1.0, 1.0)
        if rule == "ddim":
            alpha_bar_prev = float(levels[t - 1])
            x = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1.0 - alpha_bar_prev) * eps
        else:
            x = posterior_mean(x0, x, betas, t) if rule == "posterior" else x0
            if t > 1:
                variance = posterior_variance(betas, t) if noise_scale == "posterior" else float(betas[t - 1])
                x = x + math.sqrt(variance) * step_noise[t - 1]
        if clip_steps:
            x = jnp.clip(x, -1.0, 1.0)
    return x
