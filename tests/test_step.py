"""The shared update step (agents/step.py) on a toy agent with two quadratic losses, against the gradient,
Adam and Polyak updates written out in NumPy."""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import agents
from agents import step

LR, TAU, BATCH, DIM = 0.1, 0.2, 5, 3
OPTIMIZER = optax.adam(LR)  # one instance: agents stacked for vmap must share their static fields


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    tau: float = TAU


class ToyAgent(flax.struct.PyTreeNode):
    """critic: least squares of obs @ w against the targets; actor: b pulled towards obs + noise."""

    rng: jax.Array
    params: dict
    target_critic: dict
    opt_state: optax.OptState
    config: ToyConfig = flax.struct.field(pytree_node=False)
    optimizer: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int) -> "ToyAgent":
        rng = np.random.default_rng(seed)
        params = {
            "critic": {"w": jnp.asarray(rng.normal(size=DIM), jnp.float32)},
            "actor": {"b": jnp.asarray(rng.normal(size=DIM), jnp.float32)},
        }
        target = {"w": jnp.asarray(rng.normal(size=DIM), jnp.float32)}
        return cls(jax.random.PRNGKey(seed), params, target, OPTIMIZER.init(params), ToyConfig(), OPTIMIZER)

    def draw_noise(self, key, batch_size):
        return {"shift": jax.random.normal(key, (batch_size,))}

    def total_loss(self, params, batch, noise):
        obs = batch["observations"]
        critic = jnp.mean(jnp.square(obs @ params["critic"]["w"] - batch["targets"]))
        actor = jnp.mean(jnp.sum(jnp.square(params["actor"]["b"] - obs - noise["shift"][:, None]), -1))
        return step.sum_losses(critic=(critic, {"loss": critic}), actor=(actor, {"loss": actor}))


def toy_batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(BATCH, DIM)).astype(np.float32),
        "targets": rng.normal(size=BATCH).astype(np.float32),
    }


def np_losses_and_grads(w, b, obs, targets, shift):
    residual = obs @ w - targets
    pulled = b - obs - shift[:, None]
    losses = {"critic": np.mean(residual**2), "actor": np.mean(np.sum(pulled**2, -1))}
    grads = {"w": 2.0 / BATCH * obs.T @ residual, "b": 2.0 / BATCH * pulled.sum(0)}
    return losses, grads


def test_step_is_adam_on_the_summed_losses_and_polyak_from_the_params_before_it():
    agent = ToyAgent.create(seed=1)
    batch = toy_batch()
    update = jax.jit(step.with_target_critic)
    params = {"w": np.asarray(agent.params["critic"]["w"], np.float64)}
    params["b"] = np.asarray(agent.params["actor"]["b"], np.float64)
    target = np.asarray(agent.target_critic["w"], np.float64)
    moments = {name: (np.zeros(DIM), np.zeros(DIM)) for name in params}
    rng = agent.rng
    b1, b2, eps = 0.9, 0.999, 1e-8
    for count in (1, 2):  # the second step sees the first one's moments and count
        rng, key = jax.random.split(rng)
        shift = np.asarray(jax.random.normal(key, (BATCH,)), np.float64)
        losses, grads = np_losses_and_grads(params["w"], params["b"], *batch.values(), shift)
        agent, info = update(agent, batch)
        target = TAU * params["w"] + (1 - TAU) * target  # the critic's params from before the step
        for name, grad in grads.items():
            first, second = moments[name]
            first, second = b1 * first + (1 - b1) * grad, b2 * second + (1 - b2) * grad**2
            moments[name] = first, second
            corrected = first / (1 - b1**count), second / (1 - b2**count)
            params[name] = params[name] - LR * corrected[0] / (np.sqrt(corrected[1]) + eps)

        np.testing.assert_array_equal(jax.random.key_data(agent.rng), jax.random.key_data(rng))
        np.testing.assert_allclose(agent.params["critic"]["w"], params["w"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(agent.params["actor"]["b"], params["b"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(agent.target_critic["w"], target, rtol=1e-5, atol=1e-6)
        assert set(info) == {"critic/loss", "actor/loss", "grad/norm"}
        for name, loss in losses.items():
            np.testing.assert_allclose(info[f"{name}/loss"], loss, rtol=1e-5)
        norm = np.sqrt(sum(np.sum(grad**2) for grad in grads.values()))
        np.testing.assert_allclose(info["grad/norm"], norm, rtol=1e-5)


def test_sum_losses_adds_the_losses_and_prefixes_each_info():
    total, info = step.sum_losses(a=(1.5, {"x": 1, "y": 2}), b=(2.0, {"x": 3}), c=(-0.5, {}))
    assert total == 3.0
    assert info == {"a/x": 1, "a/y": 2, "b/x": 3}


def test_vmapped_over_seeds_each_agent_takes_its_own_step():
    """The step is a pure function of (agent, batch): a vmap over a leading seed axis equals one call each."""
    seeds = [ToyAgent.create(seed) for seed in (3, 4)]
    batch = toy_batch()
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *seeds)
    together, info = jax.jit(jax.vmap(step.with_target_critic, in_axes=(0, None)))(stacked, batch)
    for index, agent in enumerate(seeds):
        alone, alone_info = jax.jit(step.with_target_critic)(agent, batch)
        jax.tree_util.tree_map(
            lambda a, b, i=index: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7),
            (together, info),
            (alone, alone_info),
        )
    assert not np.allclose(together.params["actor"]["b"][0], together.params["actor"]["b"][1])


@pytest.mark.parametrize("algorithm", ["qc_fql", "qc", "rlpd"])
def test_agents_of_one_config_stack_into_a_batch_of_seeds(algorithm):
    """Equal configs give equal static fields (one optimizer instance), so seeds stack for jax.vmap."""
    config = dict(algorithm=algorithm, hidden_dims=[8, 8])
    first, second = (agents.make_agent(config, seed, obs_dim=2, action_dim=2) for seed in (0, 1))
    assert jax.tree_util.tree_structure(first) == jax.tree_util.tree_structure(second)
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), first, second)
    assert stacked.rng.shape[0] == 2
