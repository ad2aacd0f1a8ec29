"""SUPE-GT (agents/supe_gt.py): the segment ELBO and the relabelled high-level transitions against NumPy on
hand-built trajectories, skills that reproduce their segments, and a kl_weight vector whose member is the
single run, killed mid-skill online and resumed exactly."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

import agents
import buffers
from agents import critic as td
from agents import supe_gt
from launch import train as train_module
from tests.helpers import compose_config, train_interrupted
from tests.test_buffers import hand_built
from tests.test_vector import TINY, assert_member_is_alone, rows, untimed

DISCOUNT = 0.99
CHUNK = 3
STARTS = (2, 9, 0, 10)  # 2 crosses the end of the first trajectory; 9 and 10 hold the success at index 10


def make(**overrides):
    config = {
        "algorithm": "supe_gt",
        "chunk_length": CHUNK,
        "skill_dim": 2,
        "vae_hidden_dims": [16, 16],
        "encoder_size": 8,
        "hidden_dims": [8, 8],
        "num_qs": 2,
        "discount": DISCOUNT,
        "kl_weight": 0.1,
        **overrides,
    }
    return agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)


def chunk_batch(data, starts=STARTS):
    batch = buffers.gather_chunks(buffers.from_dataset(data), jnp.asarray(starts), CHUNK, DISCOUNT)
    return {key: np.asarray(value) for key, value in batch.items()}


def np_log_normal(x, means, log_stds):
    """Per-dimension log density of N(means, exp(log_stds)^2)."""
    variance = np.exp(2.0 * log_stds)
    return -0.5 * (x - means) ** 2 / variance - 0.5 * np.log(2 * np.pi * variance)


def np_kl(means_q, log_stds_q, means_p, log_stds_p):
    """KL(q || p) of diagonal Gaussians, by the textbook formula, summed over dimensions."""
    var_q, var_p = np.exp(2 * log_stds_q), np.exp(2 * log_stds_p)
    return 0.5 * (np.log(var_p / var_q) + (var_q + (means_q - means_p) ** 2) / var_p - 1.0).sum(-1)


def test_segment_elbo_matches_numpy_and_ignores_segments_crossing_an_episode_end():
    agent, data = make(), hand_built()
    batch = chunk_batch(data)
    noise = np.asarray(agent.draw_noise(jax.random.PRNGKey(1), len(STARTS)))
    loss, info = agent.total_loss(agent.params, batch, noise)

    def apply(method, *args):
        return [np.asarray(x, np.float64) for x in agent.vae.apply(agent.params, *args, method=method)]

    states = np.stack([data["observations"][t : t + CHUNK] for t in STARTS])
    actions = np.stack([data["actions"][t : t + CHUNK] for t in STARTS]).astype(np.float64)
    crosses = np.array([data["terminals"][t : t + CHUNK - 1].any() for t in STARTS])
    post_means, post_log_stds = apply("encode", states, actions)
    prior_means, prior_log_stds = apply("prior", states[:, 0])
    latents = post_means + np.exp(post_log_stds) * noise
    means, log_stds = apply("decode", states[:, 0], latents)
    shape = actions.shape
    nll = -np_log_normal(actions, means.reshape(shape), log_stds.reshape(shape)).sum(-1).mean(-1)
    kl = np_kl(post_means, post_log_stds, prior_means, prior_log_stds)
    inside = ~crosses
    assert crosses.tolist() == [True, False, False, False]
    np.testing.assert_allclose(info["vae/reconstruction"], nll[inside].mean(), rtol=1e-5)
    np.testing.assert_allclose(info["vae/kl"], kl[inside].mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, nll[inside].mean() + 0.1 * kl[inside].mean(), rtol=1e-5)

    other_episode = {**batch, "actions": batch["actions"].copy()}
    other_episode["actions"][0] = 0.5  # the crossing segment's actions do not enter the loss
    np.testing.assert_allclose(agent.total_loss(agent.params, other_episode, noise)[0], loss, rtol=1e-6)


def test_relabelled_transitions_match_numpy():
    """reward = sum_k gamma^k r_{t+k} * m_{t..t+k-1}, mask = prod m, bootstrap gamma^h from s_{t+h}, the
    action tanh(encoder mean); the segment crossing an episode end leaves the critic loss unchanged."""
    agent, data = make(), hand_built()
    batch = chunk_batch(data)
    latents = np.asarray(agent.encode(batch))
    high = supe_gt.relabel(batch, jnp.asarray(latents))
    next_q = np.array([0.5, -1.0, 2.0, 3.0])
    for row, t in enumerate(STARTS):
        reward, alive = 0.0, 1.0
        for k in range(CHUNK):
            reward += DISCOUNT**k * data["rewards"][t + k] * alive
            alive *= data["masks"][t + k]
        target = reward + DISCOUNT**CHUNK * alive * next_q[row]
        np.testing.assert_allclose(
            td.chunk_target(high, jnp.asarray(next_q), DISCOUNT)[row], target, rtol=1e-5
        )
        np.testing.assert_allclose(high["rewards"][row, -1], reward, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            high["next_observations"][row, -1], data["next_observations"][t + CHUNK - 1]
        )
    assert np.asarray(high["masks"])[:, -1].tolist() == [1.0, 0.0, 1.0, 0.0]
    np.testing.assert_allclose(
        high["actions"][:, 0], np.clip(np.tanh(latents), -1 + 1e-5, 1 - 1e-5), rtol=1e-6
    )
    assert high["rewards"][1, -1] != batch["rewards"][1, -1]  # the reward after the success is dropped

    noise = agent.high.draw_noise(jax.random.PRNGKey(0), len(STARTS))
    changed = {**high, "rewards": high["rewards"].at[0].add(5.0)}
    loss = agent.high.critic_loss(high, agent.high.params, noise)[0]
    np.testing.assert_allclose(agent.high.critic_loss(changed, agent.high.params, noise)[0], loss, rtol=1e-6)


RECONSTRUCTION_TOLERANCE = 0.05  # max |decoded - segment action|: 3% of the actions' range [-0.8, 0.8]
RECONSTRUCTION_CHECK_EVERY = 100  # updates between two checks of the convergence criterion
RECONSTRUCTION_MAX_UPDATES = 3000  # 10x what either instruction set needed (see the test's docstring)


def test_a_decoded_skill_reproduces_its_segment():
    """Trained on a dataset of three repeated segments, the decoder's mean for (s_t, encoder mean) is the
    segment's actions; the agent acts with the prior until its first online update, then with the policy.

    The guarantee is convergence, not where a fixed number of updates lands: XLA's CPU kernels round
    differently per instruction set, and at this learning rate Adam moves on after fitting, so after exactly
    1,000 updates an AVX2 CPU missed by 0.165 where AVX-512 was within 0.05. The VAE trains until every
    decoded action is within the tolerance, checked every 100 updates, and the test asserts it gets there
    inside the cap and that the error fell at least tenfold from the untrained decoder's (measured on a
    2-core EPYC: 0.796 -> 0.025 after 200 updates, and with XLA_FLAGS=--xla_cpu_max_isa=AVX2 0.796 -> 0.020
    after 300). A small KL weight (0.003) lets three distinct segments keep distinct latents, so a correct
    ELBO reaches the criterion."""
    rng = np.random.default_rng(0)
    segments = {
        "observations": rng.normal(size=(3, 2)).astype(np.float32),
        "next_observations": rng.normal(size=(3, CHUNK, 2)).astype(np.float32),
        "actions": rng.uniform(-0.8, 0.8, (3, CHUNK, 2)).astype(np.float32),
        "valid": np.ones((3, CHUNK), np.float32),
    }
    batch = {key: np.tile(value, (8,) + (1,) * (value.ndim - 1)) for key, value in segments.items()}
    agent = make(kl_weight=0.003, lr=3e-3)

    def error(agent):
        means, _ = agent.vae.apply(
            agent.params, segments["observations"], agent.encode(segments), method="decode"
        )
        return jnp.abs(means.reshape(3, CHUNK, 2) - segments["actions"]).max()

    @jax.jit
    def train_until_reconstructed(agent):
        def unconverged(state):
            agent, updates = state
            return (error(agent) > RECONSTRUCTION_TOLERANCE) & (updates < RECONSTRUCTION_MAX_UPDATES)

        def train(state):
            agent, updates = state
            agent = jax.lax.fori_loop(0, RECONSTRUCTION_CHECK_EVERY, lambda _, a: a.update(batch)[0], agent)
            return agent, updates + RECONSTRUCTION_CHECK_EVERY

        return jax.lax.while_loop(unconverged, train, (agent, jnp.int32(0)))

    initial_error = float(error(agent))
    agent, updates = train_until_reconstructed(agent)
    final_error = float(error(agent))
    assert final_error <= RECONSTRUCTION_TOLERANCE, (
        f"not reconstructed within {RECONSTRUCTION_MAX_UPDATES} updates: max error {final_error:.3f}"
    )
    assert final_error <= initial_error / 10, (initial_error, final_error)
    print(f"reconstructed after {int(updates)} updates (error {initial_error:.3f} -> {final_error:.3f})")

    key = jax.random.PRNGKey(3)
    acted = agent.sample_actions(segments["observations"], key)
    assert acted.shape == (3, CHUNK, 2) and float(jnp.abs(acted).max()) <= 1.0
    online = agent.replace(online_updates=jnp.int32(1))
    assert not np.allclose(online.sample_actions(segments["observations"], key), acted)


def tiny(dataset_dir, *overrides):
    return compose_config(
        "agent=supe_gt",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        *TINY,
        "agent.num_qs=2",
        "agent.vae_hidden_dims=[16,16]",
        "agent.encoder_size=8",
        *overrides,
    )


def test_a_kl_weight_vector_member_is_the_run_alone_through_a_mid_skill_resume(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    """kl_weight=[0.001,0.003], killed online after the checkpoint at env step 10 (2 of a skill's 4 actions
    done) and resumed: the 0.003 member logs the rows of the single run, which is never interrupted."""
    vector_dir = tmp_path / "vector"
    vector_cfg = ("agent.kl_weight=[0.001,0.003]",)
    train_interrupted(train_module.train, tiny(tiny_dataset_dir, *vector_cfg), vector_dir, monkeypatch, 4)
    # the checkpoint it resumes from holds each run's skill with 2 of its 4 actions still to execute
    (counters,) = [
        json.loads(path.read_text())
        for path in vector_dir.rglob("*")
        if path.is_file() and b'"queue"' in path.read_bytes()
    ]
    assert counters["env_step"] == 10 and [len(run["online"]["queue"]) for run in counters["runs"]] == [2, 2]
    vector = train_module.train(tiny(tiny_dataset_dir, *vector_cfg, "resume=true"), vector_dir)
    alone = train_module.train(tiny(tiny_dataset_dir, "agent.kl_weight=0.003"), tmp_path / "alone")
    member = vector.members[1]
    assert OmegaConf.load(member.run_dir / ".hydra" / "config.yaml").agent.kl_weight == 0.003
    assert_member_is_alone(vector, 1, member.run_dir, alone, tmp_path / "alone")
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a[1], b[0], rtol=1e-3, atol=1e-5),
        vector.agent.high.params,
        alone.agent.high.params,
    )
    low = rows(vector.members[0].run_dir)
    assert low[0]["offline/vae/loss"] != rows(member.run_dir)[0]["offline/vae/loss"]
    assert "online/critic/critic_loss" in untimed(rows(member.run_dir))[-2]
