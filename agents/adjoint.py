"""The memoryless SDE of a flow policy and the adjoint of adjoint matching (Domingo-Enrich et al., ICLR 2025),
as QAM fine-tunes a flow with them (ColinQiyangLi/qam agents/qam.py `adj_matching` and `actor_loss`).

A flow v(s, x, t) integrated from t = 0 (noise) to 1 (action) has a memoryless SDE with the same marginals,
    dx = (2 v(x, t) - x / t) dt + sigma(t) dW,   sigma(t) = sqrt(2 (1 - t) / t),
whose final sample is independent of its initial noise; fine-tuning its drift towards exp(inv_temp * Q) is
then a regression (the adjoint-matching loss) on states of a rollout, with the lean adjoint that carries
-inv_temp * dQ/da backwards through the base flow's vector-Jacobian products. On the Euler grid t_i = i h,
h = 1 / num_steps, the authors' code shifts time by one step inside 1/t and sigma (t + h), which keeps both
finite at t = 0, and takes the last step with the base flow's ODE. Velocities here are closures
v(x, times) over the observations (or their features), so a caller encodes once.

Everything is a plain function of caller-drawn noise: differentiable through the rollout too (BAM).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Velocity = Callable[[jax.Array, jax.Array], jax.Array]  # (x (..., dim), times (..., 1)) -> (..., dim)


def sigma(times: jax.Array, num_steps: int) -> jax.Array:
    """The memoryless noise scale at grid times t, sqrt(2 (1 - t + h) / (t + h)), h = 1 / num_steps."""
    h = 1 / num_steps
    return jnp.sqrt(2 * (1 - times + h) / (times + h))


def grid_time(step: int, num_steps: int, x: jax.Array) -> jax.Array:
    """t_step = step / num_steps beside each row of x: (..., 1)."""
    return jnp.full((*x.shape[:-1], 1), step / num_steps, x.dtype)


def memoryless_rollout(
    fine: Velocity,
    base: Velocity,
    x0: jax.Array,
    noise: jax.Array,
    num_steps: int,
    with_velocities: bool = False,
) -> tuple[jax.Array, ...]:
    """Euler-Maruyama on the memoryless SDE of the `fine` flow for the first num_steps - 1 steps,
    x <- x + h (2 v(x, t) - x / (t + h)) + sqrt(h) sigma(t) eps, then one Euler step of the `base` flow's ODE
    (the adjoint-matching paper's last step, as the authors' code).

    x0: (batch, dim) initial noise; noise: (num_steps - 1, batch, dim) the steps' standard normals.
    Returns the states x_0..x_K (num_steps + 1, batch, dim) and the times t_0..t_{K-1} (num_steps, batch, 1);
    `with_velocities` adds the fine flow's velocities of the SDE steps, v(x_i, t_i) for i < K - 1
    (num_steps - 1, batch, dim), which BAM's control cost reads without evaluating the fine flow again.
    """
    h = 1 / num_steps
    x, xs, times, velocities = x0, [x0], [], []
    for i in range(num_steps):
        t = grid_time(i, num_steps, x)
        if i < num_steps - 1:
            velocities.append(fine(x, t))
            x = x + h * (2 * velocities[-1] - x / (t + h)) + jnp.sqrt(h) * sigma(t, num_steps) * noise[i]
        else:
            x = x + h * base(x, t)
        xs.append(x)
        times.append(t)
    if with_velocities:
        return jnp.stack(xs), jnp.stack(times), jnp.stack(velocities)
    return jnp.stack(xs), jnp.stack(times)


def terminal_adjoint(
    q: Callable[[jax.Array], jax.Array], actions: jax.Array, inv_temp, clip: bool
) -> jax.Array:
    """The adjoint's start, -inv_temp * d/da sum_batch mean_k Q_k(s, a) at the rollout's final actions, taken
    at clip(a, -1, 1) when `clip` (the authors' clip_adj: no pull on the coordinates already past the box).

    q: actions (batch, dim) -> (num_qs, batch); actions: (batch, dim).
    """

    def objective(a):
        return q(jnp.clip(a, -1.0, 1.0) if clip else a).mean(axis=0).sum()

    return -jax.grad(objective)(actions) * inv_temp


def lean_adjoint(base: Velocity, xs: jax.Array, terminal: jax.Array, num_steps: int) -> jax.Array:
    """The lean adjoint backwards from a_K = terminal: a_i = a_{i+1} + h a_{i+1}^T d/dx b(x_i, t_i + h), with
    the base drift b(x, t) = 2 v_base(x, t) - x / t, as the authors' code evaluates it (at x_i, time t_i + h).

    xs: (num_steps + 1, batch, dim) from `memoryless_rollout`; terminal: (batch, dim).
    Returns a_0..a_{K-1}: (num_steps, batch, dim).
    """
    h = 1 / num_steps
    adjoint, adjoints = terminal, []
    for i in reversed(range(num_steps)):
        t = grid_time(i, num_steps, terminal) + h

        def drift(x, t=t):
            return 2 * base(x, t) - x / t

        adjoint = adjoint + h * jax.vjp(drift, xs[i])[1](adjoint)[0]
        adjoints.append(adjoint)
    return jnp.stack(adjoints[::-1])


def adjoint_matching_loss(
    fine_velocities: jax.Array,
    base_velocities: jax.Array,
    adjoints: jax.Array,
    times: jax.Array,
    num_steps: int,
) -> jax.Array:
    """mean_batch sum_i ||2 (v_fine - v_base)(x_i, t_i) / sigma(t_i) + sigma(t_i) a_i||^2: the fine flow's
    control u = 2 (v_fine - v_base) / sigma regressed onto -sigma a_i.

    fine_velocities, base_velocities, adjoints: (num_steps, batch, dim); times: (num_steps, batch, 1).
    """
    sigmas = sigma(times, num_steps)
    per_step = jnp.sum(
        jnp.square((fine_velocities - base_velocities) * 2 / sigmas + sigmas * adjoints), axis=-1
    )
    return jnp.mean(jnp.sum(per_step, axis=0))
