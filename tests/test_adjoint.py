"""agents/adjoint.py against NumPy loops on hand-built velocities and critics whose derivatives are known in
closed form, and the lean adjoint against jax.grad of the rolled-out objective."""

import jax
import jax.numpy as jnp
import numpy as np

from agents import adjoint

K, BATCH, DIM = 4, 3, 2
RNG = np.random.default_rng(0)
A = RNG.normal(size=(DIM, DIM)).astype(np.float32)
GOALS = RNG.uniform(-1, 1, (2, DIM)).astype(np.float32)  # two critics Q_k(a) = -||a - g_k||^2


def base(x, t):
    """v(x, t) = t x A + 0.5 sin(x): Jacobian t A^T + 0.5 diag(cos x) for one row."""
    return t * (x @ A) + 0.5 * jnp.sin(x)


def fine(x, t):
    return base(x, t) + 0.3 * (1 - t)


def np_base(x, t):
    return t * (x @ A) + 0.5 * np.sin(x)


def q(actions):
    return -jnp.sum(jnp.square(actions[None] - GOALS[:, None]), -1)


def test_sigma_is_the_shifted_memoryless_schedule():
    times = jnp.asarray([0.0, 0.5, 0.9])
    np.testing.assert_allclose(adjoint.sigma(times, 10), np.sqrt([22.0, 1.2 / 0.6, 0.4]), rtol=1e-6)


def test_rollout_matches_a_numpy_loop_and_ends_with_the_base_ode():
    x0 = RNG.normal(size=(BATCH, DIM)).astype(np.float32)
    noise = RNG.normal(size=(K - 1, BATCH, DIM)).astype(np.float32)
    xs, times = adjoint.memoryless_rollout(fine, base, jnp.asarray(x0), jnp.asarray(noise), K)

    h, x, expected = 1 / K, x0.astype(np.float64), [x0]
    for i in range(K):
        t = i * h
        if i < K - 1:
            drift = 2 * (np_base(x, t) + 0.3 * (1 - t)) - x / (t + h)
            x = x + h * drift + np.sqrt(h) * np.sqrt(2 * (1 - t + h) / (t + h)) * noise[i]
        else:
            x = x + h * np_base(x, t)
        expected.append(x)
    np.testing.assert_allclose(xs, np.stack(expected), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(times[:, 0, 0], np.arange(K) / K)
    assert xs.shape == (K + 1, BATCH, DIM) and times.shape == (K, BATCH, 1)


def test_the_terminal_adjoint_is_minus_inv_temp_grad_q_at_the_clipped_action():
    actions = np.asarray([[0.5, -0.2], [1.5, 0.1], [-0.3, -2.0]], np.float32)
    grad = -2 * (actions[None] - GOALS[:, None]).mean(0)  # d/da mean_k Q_k
    inside = np.abs(actions) < 1
    got = adjoint.terminal_adjoint(q, jnp.asarray(actions), 3.0, clip=True)
    np.testing.assert_allclose(got, -3.0 * grad * inside, rtol=1e-6)  # no pull past the box
    np.testing.assert_allclose(
        adjoint.terminal_adjoint(q, jnp.asarray(actions), 3.0, clip=False), -3.0 * grad
    )


def rollout():
    x0 = jnp.asarray(RNG.normal(size=(BATCH, DIM)), jnp.float32)
    noise = jnp.asarray(RNG.normal(size=(K - 1, BATCH, DIM)), jnp.float32)
    xs, _ = adjoint.memoryless_rollout(fine, base, x0, noise, K)
    return xs, adjoint.terminal_adjoint(q, xs[-1], 2.0, clip=True)


def test_lean_adjoint_matches_a_plain_loop_with_explicit_jacobians():
    xs, terminal = rollout()
    got = adjoint.lean_adjoint(base, xs, terminal, K)
    h, adj, expected = 1 / K, np.asarray(terminal, np.float64), []
    for i in reversed(range(K)):
        t = i * h + h
        for row in range(BATCH):
            x = np.asarray(xs[i, row], np.float64)
            jacobian = 2 * (t * A.T + 0.5 * np.diag(np.cos(x))) - np.eye(DIM) / t  # d drift_j / d x_l
            adj[row] = adj[row] + h * jacobian.T @ adj[row]
        expected.append(adj.copy())
    np.testing.assert_allclose(got, np.stack(expected[::-1]), rtol=1e-5, atol=1e-6)


def test_lean_adjoint_is_the_gradient_of_the_rolled_out_objective():
    """a_i = d/dx_i of -inv_temp * Q(clip(x_K)) with x carried to K by the base drift's steps, the
    rollout's residual (its noise, the fine flow's part) held fixed so the path passes through its states."""
    xs, terminal = rollout()
    adjoints = adjoint.lean_adjoint(base, xs, terminal, K)
    h = 1 / K

    def step(x, j):
        t = jnp.full((BATCH, 1), j * h + h)
        return x + h * (2 * base(x, t) - x / t)

    def objective(x, start):
        for j in range(start, K):
            x = step(x, j) + jax.lax.stop_gradient(xs[j + 1] - step(xs[j], j))
        return -2.0 * q(jnp.clip(x, -1, 1)).mean(0).sum()

    for i in range(K):
        np.testing.assert_allclose(jax.grad(objective)(xs[i], i), adjoints[i], rtol=1e-4, atol=1e-5)


def test_adjoint_matching_loss_matches_numpy():
    fine_v, base_v, adj = (RNG.normal(size=(K, BATCH, DIM)).astype(np.float32) for _ in range(3))
    times = np.broadcast_to((np.arange(K) / K)[:, None, None], (K, BATCH, 1)).astype(np.float32)
    expected = 0.0
    for i in range(K):
        s = np.sqrt(2 * (1 - times[i, 0, 0] + 1 / K) / (times[i, 0, 0] + 1 / K))
        for row in range(BATCH):
            expected += np.sum((2 * (fine_v[i, row] - base_v[i, row]) / s + s * adj[i, row]) ** 2) / BATCH
    got = adjoint.adjoint_matching_loss(*map(jnp.asarray, (fine_v, base_v, adj, times)), K)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
