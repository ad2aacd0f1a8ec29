"""SUPE-GT (agents/supe_gt.py): the segment ELBO of the closed-loop decoder and the relabelled high-level
transitions (encoder and stored latents) against NumPy on hand-built trajectories, skills that reproduce
their segments, closed-loop acting, and a kl_weight vector whose member is the single run, killed mid-skill
online and resumed exactly."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
    nll = np.zeros(len(STARTS))
    for k in range(CHUNK):  # closed loop: a_{t+k} from (s_{t+k}, z)
        means, log_stds = apply("decode", states[:, k], latents)
        nll -= np_log_normal(actions[:, k], means, log_stds).sum(-1) / CHUNK
    kl = np_kl(post_means, post_log_stds, prior_means, prior_log_stds)
    inside = ~crosses
    assert crosses.tolist() == [True, False, False, False]
    np.testing.assert_allclose(info["vae/reconstruction"], nll[inside].mean(), rtol=1e-5)
    np.testing.assert_allclose(info["vae/kl"], kl[inside].mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, nll[inside].mean() + 0.1 * kl[inside].mean(), rtol=1e-5)

    other_episode = {**batch, "actions": batch["actions"].copy()}
    other_episode["actions"][0] = 0.5  # the crossing segment's actions do not enter the loss
    np.testing.assert_allclose(agent.total_loss(agent.params, other_episode, noise)[0], loss, rtol=1e-6)


@pytest.mark.parametrize("bootstrap", ["skill", "steps"])
def test_relabelled_transitions_match_numpy(bootstrap):
    """reward = sum_k gamma^k r_{t+k} * m_{t..t+k-1}, mask = prod m, bootstrap from s_{t+h} with gamma once
    per high-level step (the authors' SAC) or gamma^h, the action tanh(encoder mean); the segment crossing
    an episode end leaves the critic loss unchanged."""
    agent, data = make(bootstrap=bootstrap), hand_built()
    batch = chunk_batch(data)
    latents = np.asarray(agent.encode(batch))
    high = supe_gt.relabel(batch, jnp.asarray(latents), bootstrap)
    next_q = np.array([0.5, -1.0, 2.0, 3.0])
    for row, t in enumerate(STARTS):
        reward, alive = 0.0, 1.0
        for k in range(CHUNK):
            reward += DISCOUNT**k * data["rewards"][t + k] * alive
            alive *= data["masks"][t + k]
        target = reward + DISCOUNT ** (1 if bootstrap == "skill" else CHUNK) * alive * next_q[row]
        np.testing.assert_allclose(
            td.chunk_target(high, jnp.asarray(next_q), DISCOUNT)[row], target, rtol=1e-5
        )
        np.testing.assert_allclose(high["rewards"][row, -1], reward, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            high["next_observations"][row, -1], data["next_observations"][t + CHUNK - 1]
        )
    assert np.asarray(high["masks"])[:, -1].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert np.asarray(high["valid"])[:, -1].tolist() == [0.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(
        high["actions"][:, 0], np.clip(np.tanh(latents), -1 + 1e-5, 1 - 1e-5), rtol=1e-6
    )
    assert high["rewards"][1, -1] != batch["rewards"][1, -1]  # the reward after the success is dropped

    noise = agent.high.draw_noise(jax.random.PRNGKey(0), len(STARTS))
    changed = {**high, "rewards": high["rewards"].at[0].add(5.0)}
    loss = agent.high.critic_loss(high, agent.high.params, noise)[0]
    np.testing.assert_allclose(agent.high.critic_loss(changed, agent.high.params, noise)[0], loss, rtol=1e-6)


# Skills as the engine records them on the hand-built trajectories (4, 3, 6 steps): a skill of CHUNK = 3 steps
# starts at 0 and 3 (cut by the episode end after 3), 4 (the episode's start resets the carry), 7 and 10.
SKILL_STARTS = (0, 3, 4, 7, 10)


def online_store(data, latents):
    """The hand-built trajectories inserted one transition at a time into an online store recording each
    step's skill latent and 1 at a skill's first step."""
    store = buffers.store.empty(2, 2, 32, fields={"latents": (2,), "skill_start": ()})
    skill = np.searchsorted(SKILL_STARTS, np.arange(len(data["actions"])), side="right") - 1
    transitions = {
        key: jnp.asarray(data[key])
        for key in ("observations", "actions", "rewards", "masks", "terminals", "next_observations")
    }
    transitions["latents"] = jnp.asarray(latents[skill])
    transitions["skill_start"] = jnp.isin(jnp.arange(len(skill)), jnp.asarray(SKILL_STARTS)).astype(
        jnp.float32
    )
    return buffers.store.insert_many(store, transitions)


def test_stored_latents_relabel_online_skills_across_an_episode_end():
    """An online chunk that starts a skill is relabelled with the z the policy chose, every other chunk
    (online inside a skill, offline) with the encoder's; the skill cut by an episode end keeps its stored z
    and leaves the critic loss (valid = 0). Against NumPy, in one mixed batch as the online update sees it."""
    agent, data = make(), hand_built()
    chosen = np.random.default_rng(1).normal(size=(len(SKILL_STARTS), 2)).astype(np.float32)
    online = online_store(data, chosen)
    starts = np.arange(len(data["actions"]) - CHUNK + 1)
    online_batch = buffers.gather_chunks(online, jnp.asarray(starts), CHUNK, DISCOUNT)
    offline_batch = buffers.gather_chunks(buffers.from_dataset(data), jnp.asarray(starts), CHUNK, DISCOUNT)
    offline = starts % 4 == 1  # rows 1, 5 and 9 offline, as in a mixed batch
    from_offline = jnp.asarray(offline)
    batch = buffers.chunks.rows_where(
        from_offline, *buffers.chunks.with_recorded(offline_batch, online_batch)
    )
    encoded = np.asarray(agent.encode(batch))
    latents = np.asarray(supe_gt.chosen_latents(batch, jnp.asarray(encoded)))
    for row, t in enumerate(starts):
        stored = not offline[row] and t in SKILL_STARTS
        expected = chosen[SKILL_STARTS.index(t)] if stored else encoded[row]
        np.testing.assert_array_equal(latents[row], expected)
    assert np.asarray(batch["recorded"]).tolist() == (1.0 - offline).tolist()
    high = supe_gt.relabel(batch, jnp.asarray(latents))
    crosses = np.array([data["terminals"][t : t + CHUNK - 1].any() for t in starts])
    np.testing.assert_array_equal(np.asarray(high["valid"])[:, -1], 1.0 - crosses)
    assert crosses[SKILL_STARTS[1]]  # the skill cut by the end of the first episode
    np.testing.assert_allclose(
        high["actions"][:, 0], np.clip(np.tanh(latents), -1 + 1e-5, 1 - 1e-5), rtol=1e-6
    )


FIT_FRACTION = 0.3  # the decoded actions' squared error, as a fraction of the untrained decoder's
FIT_CHECK_EVERY = 100  # updates between two checks of the criterion
FIT_MAX_UPDATES = 4000  # twice the updates that took it to 14% on both instruction sets


def test_a_decoded_skill_reproduces_its_segment():
    """Trained on a dataset of three repeated segments, the closed-loop decoder's mean for (s_{t+k}, encoder
    mean) comes towards the segment's actions: their squared error falls below 30% of the untrained
    decoder's. The test trains to that criterion (checked every 100 updates) rather than asserting where a
    fixed number of updates lands, which XLA's per-instruction-set rounding moves: exactly 1,000 updates of
    the earlier open-loop decoder were within 0.05 on AVX-512 and missed by 0.165 on AVX2. Measured on a
    2-core EPYC, 2,000 updates bring the error to 14% with the default flags and with
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 alike, and it keeps falling slowly (9% at 4,000); a decoder that
    learns nothing stays at 100%."""
    rng = np.random.default_rng(0)
    segments = {
        "observations": rng.normal(size=(3, 2)).astype(np.float32),
        "next_observations": rng.normal(size=(3, CHUNK, 2)).astype(np.float32),
        "actions": rng.uniform(-0.8, 0.8, (3, CHUNK, 2)).astype(np.float32),
        "valid": np.ones((3, CHUNK), np.float32),
    }
    batch = {key: np.tile(value, (8,) + (1,) * (value.ndim - 1)) for key, value in segments.items()}

    def decoded_error(agent):
        latents = agent.encode(segments)
        states = supe_gt.segment_states(segments)
        each_step = jnp.broadcast_to(latents[:, None], (3, CHUNK, latents.shape[-1]))
        means, _ = agent.vae.apply(agent.params, states, each_step, method="decode")
        return jnp.square(means - segments["actions"]).mean()

    agent = make(kl_weight=0.003, lr=3e-3)
    before = float(decoded_error(agent))

    @jax.jit
    def train_until_fitted(agent):
        def unfitted(state):
            agent, updates = state
            return (decoded_error(agent) >= FIT_FRACTION * before) & (updates < FIT_MAX_UPDATES)

        def train(state):
            agent, updates = state
            agent = jax.lax.fori_loop(0, FIT_CHECK_EVERY, lambda _, a: a.update(batch)[0], agent)
            return agent, updates + FIT_CHECK_EVERY

        return jax.lax.while_loop(unfitted, train, (agent, jnp.int32(0)))

    agent, updates = train_until_fitted(agent)
    after = float(decoded_error(agent))
    assert after < FIT_FRACTION * before, f"{after / before:.0%} of the untrained error after {int(updates)}"
    print(f"fitted after {int(updates)} updates: {before:.4f} -> {after:.4f}")


def test_a_skill_acts_closed_loop_for_chunk_length_steps():
    """act_step picks a z at a skill's first step (recorded with skill_start 1), keeps it for CHUNK steps
    while the action follows the current observation, then picks again; evaluation takes the mode."""
    agent, key = make(), jax.random.PRNGKey(3)
    observations = jnp.asarray(np.random.default_rng(0).normal(size=(CHUNK + 1, 1, 2)), jnp.float32)
    carry, latents, starts = agent.initial_carry(), [], []
    for step in range(CHUNK + 1):
        actions, carry, fields = agent.act_step(
            observations[step], carry, jax.random.fold_in(key, step), False
        )
        assert actions.shape == (1, 2) and float(jnp.abs(actions).max()) <= 1.0
        latents.append(np.asarray(fields["latents"][0]))
        starts.append(float(fields["skill_start"][0]))
    assert starts == [1.0] + [0.0] * (CHUNK - 1) + [1.0]
    assert all(np.array_equal(z, latents[0]) for z in latents[:CHUNK]) and not np.allclose(
        latents[CHUNK], latents[0]
    )
    same_state = agent.act_step(observations[0], agent.initial_carry(), key, False)[0]
    other_state = agent.act_step(observations[1], agent.initial_carry(), key, False)[0]
    assert not np.allclose(same_state, other_state)  # the decoder reads the current state
    modes = [agent.choose_latents(observations[0], jax.random.PRNGKey(k), True) for k in (0, 1)]
    np.testing.assert_array_equal(modes[0], modes[1])
    online = agent.replace(online_updates=jnp.int32(1))
    assert not np.allclose(online.choose_latents(observations[0], key, True), modes[0])


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


def test_a_run_killed_mid_skill_resumes_bit_exactly_and_is_a_two_seed_vector_member(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    """seed=1 killed online after the checkpoint at env step 10 (2 of a skill's 4 actions done, its latent
    and key in the checkpoint's carry) and resumed writes the rows and parameters of the run never killed,
    bit for bit; that run is member 1 of the vector seed=[0,1]."""
    killed_dir = tmp_path / "killed"
    train_interrupted(train_module.train, tiny(tiny_dataset_dir, "seed=1"), killed_dir, monkeypatch, 4)
    (counters,) = [
        json.loads(path.read_text())
        for path in killed_dir.rglob("*")
        if path.is_file() and b'"carry"' in path.read_bytes()
    ]
    (carry,) = [run["online"]["carry"] for run in counters["runs"]]
    assert counters["env_step"] == 10 and carry["steps_left"] == 2 and len(carry["latents"]) == 8
    resumed = train_module.train(tiny(tiny_dataset_dir, "seed=1", "resume=true"), killed_dir)
    alone = train_module.train(tiny(tiny_dataset_dir, "seed=1"), tmp_path / "alone")
    assert untimed(rows(killed_dir)) == untimed(rows(tmp_path / "alone"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.high.params, alone.agent.high.params)
    assert "online/critic/critic_loss" in untimed(rows(killed_dir))[-2]

    vector = train_module.train(tiny(tiny_dataset_dir, "seed=[0,1]"), tmp_path / "vector")
    member = vector.members[1]
    assert OmegaConf.load(member.run_dir / ".hydra" / "config.yaml").seed == 1
    assert_member_is_alone(vector, 1, member.run_dir, alone, tmp_path / "alone")
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a[1], b[0], rtol=1e-3, atol=1e-5),
        vector.agent.high.params,
        alone.agent.high.params,
    )
