"""The pixel encoder (agents/networks.py ImpalaEncoder) and FQL's random-crop augmentation (agents/step.py),
and every TD agent taking `agent.encoder=impala_small` on uint8 frame stacks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import networks, step
from agents.networks import ENCODERS, Actor, Critic, Value, VectorField, apply_encoded, encode
from agents.tanh_gaussian import TanhGaussianActor
from launch.speed.timing import convolutions

FRAMES = (64, 64, 9)  # the engine's visual observations: 64x64 RGB, frame_stack 3 on the channel axis
STATE_ONLY = {"radt", "supe_gt", "fedit"}  # RADT/DT's transformer, SUPE-GT's skill VAE and FEdit's edit
# policy (as QAM-E's) read state vectors


def fql_impala_small_params(channels: int, size: int = 64) -> int:
    """Parameters of FQL's impala_small (utils/encoders.py ImpalaEncoder, num_blocks=1) counted by hand:
    each stack is a 3x3 conv in -> f and one residual block of two 3x3 convs f -> f (kernels and biases), and
    halves the image (3x3 max-pool, stride 2, SAME); the 8x8x32 output feeds a 512-unit Dense layer."""
    total, width = 0, channels
    for features in (16, 32, 32):
        total += 9 * width * features + features + 2 * (9 * features * features + features)
        width, size = features, -(-size // 2)
    return total + size * size * width * 512 + 512


def test_impala_small_matches_fqls_shape_and_parameter_count():
    encoder = ENCODERS["impala_small"]()
    images = jnp.zeros((2, 3, *FRAMES), jnp.uint8)  # any leading shape, as best-of-N's repeated observations
    params = encoder.init(jax.random.PRNGKey(0), images)
    assert encoder.apply(params, images).shape == (2, 3, 512)
    count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    assert fql_impala_small_params(9) == 1_105_920  # 1312 + 4640 + 4640 + 18496 + 9248 + 18496 + 1049088
    assert count == fql_impala_small_params(9)


def test_an_unknown_encoder_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown agent.encoder 'resnet'.*impala_small"):
        networks.features("resnet", jnp.zeros((1, *FRAMES)))


def np_crop(images: np.ndarray, dy: int, dx: int, pad: int = 3) -> np.ndarray:
    """One sample's (..., h, w, c) edge-padded by `pad` and cropped back at offset (dy, dx)."""
    h, w = images.shape[-3:-1]
    lead = [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, [*lead, (pad, pad), (pad, pad), (0, 0)], mode="edge")
    return padded[..., dy : dy + h, dx : dx + w, :]


def crop_batch(seed: int, batch_size: int = 32):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.integers(0, 256, (batch_size, 10, 12, 9), dtype=np.uint8),
        "next_observations": rng.integers(0, 256, (batch_size, 2, 10, 12, 9), dtype=np.uint8),
        "actions": rng.normal(size=(batch_size, 2, 3)).astype(np.float32),
    }


def test_each_sample_gets_one_shift_inside_the_pad_for_all_its_frames_and_next_observations():
    batch = crop_batch(0)
    out = jax.tree_util.tree_map(np.asarray, step.random_crop(batch, jax.random.PRNGKey(1), aug_prob=1.0))
    shifts = []
    for i in range(len(batch["observations"])):
        # the shifts (in [0, 6]^2) whose NumPy crop reproduces every channel (all 3 frames) of the sample
        matches = [
            (dy, dx)
            for dy in range(7)
            for dx in range(7)
            if np.array_equal(np_crop(batch["observations"][i], dy, dx), out["observations"][i])
        ]
        assert len(matches) == 1
        (dy, dx) = matches[0]
        np.testing.assert_array_equal(
            np_crop(batch["next_observations"][i], dy, dx), out["next_observations"][i]
        )
        shifts.append(matches[0])
    assert len(set(shifts)) > 10  # one shift per sample, not one per batch
    np.testing.assert_array_equal(out["actions"], batch["actions"])


def test_the_crop_equals_the_edge_pad_at_the_shifts_its_key_draws():
    """Under jax.lax.cond the crop keeps the keys and numbers of the select it replaced: NumPy's edge pad
    and slice (np_crop) at the shifts drawn from the second half of its key, each sample its own."""
    batch, key = crop_batch(2, batch_size=8), jax.random.PRNGKey(3)
    out = step.random_crop(batch, key, aug_prob=1.0)
    shifts = np.asarray(jax.random.randint(jax.random.split(key)[1], (8, 2), 0, 2 * step.CROP_PADDING + 1))
    for name in ("observations", "next_observations"):
        expected = np.stack(
            [np_crop(images, dy, dx) for images, (dy, dx) in zip(batch[name], shifts, strict=True)]
        )
        np.testing.assert_array_equal(np.asarray(out[name]), expected)


def test_the_crop_applies_to_a_whole_batch_with_probability_aug_prob():
    batch = crop_batch(1, batch_size=8)
    unchanged = np.asarray(step.random_crop(batch, jax.random.PRNGKey(0), aug_prob=0.0)["observations"])
    np.testing.assert_array_equal(unchanged, batch["observations"])
    crop = jax.jit(lambda key: step.random_crop(batch, key, aug_prob=0.5)["observations"])
    cropped = [
        not np.array_equal(np.asarray(crop(key)), batch["observations"])
        for key in jax.random.split(jax.random.PRNGKey(2), 400)
    ]
    # each batch is cropped or not as a whole: 400 Bernoulli(0.5) draws, 0.5 +- 4 standard deviations (0.1)
    assert 0.4 < np.mean(cropped) < 0.6


def pixel_batch(config, action_dim: int = 2, batch_size: int = 4, seed: int = 0, frames=FRAMES) -> dict:
    """A synthetic chunk batch of uint8 frame stacks, as the engine samples for `config`."""
    rng = np.random.default_rng(seed)
    steps = config.sample_length
    return {
        "observations": rng.integers(0, 256, (batch_size, *frames), dtype=np.uint8),
        "next_observations": rng.integers(0, 256, (batch_size, steps, *frames), dtype=np.uint8),
        "actions": rng.uniform(-1, 1, (batch_size, steps, action_dim)).astype(np.float32),
        "rewards": rng.normal(size=(batch_size, steps)).astype(np.float32),
        "masks": np.ones((batch_size, steps), np.float32),
        "valid": np.ones((batch_size, steps), np.float32),
    }


@pytest.mark.parametrize("algorithm", sorted(set(agents.ALGORITHMS) - STATE_ONLY))
def test_every_td_agent_updates_and_acts_on_pixels(algorithm):
    cfg = dict(algorithm=algorithm, chunk_length=2, hidden_dims=[16], encoder="impala_small", aug_prob=1.0)
    if algorithm in ("qc", "dqc"):
        cfg["num_samples"] = 2
    if algorithm == "dqc":
        cfg["policy_chunk_length"] = 2
    agent = agents.make_agent(cfg, seed=0, obs_dim=FRAMES, action_dim=2)
    batch = pixel_batch(agent.config)
    updated, info = jax.jit(type(agent).update)(agent, batch)
    assert all(np.isfinite(np.asarray(value)).all() for value in info.values())
    changed = jax.tree_util.tree_map(lambda a, b: bool((a != b).any()), agent.params, updated.params)
    assert any(jax.tree_util.tree_leaves(changed))
    actions = updated.sample_actions(jnp.asarray(batch["observations"]), jax.random.PRNGKey(1))
    assert actions.shape[0] == 4 and actions.shape[-1] == 2 and np.isfinite(np.asarray(actions)).all()


@pytest.mark.parametrize(
    "algorithm, message",
    [
        ("radt", "RADT/DT's sequence model reads state vectors only"),
        ("supe_gt", "SUPE-GT's skill VAE reads state vectors only"),
        ("fedit", r"FEdit's edit policy \(an MLP on the state and the action\) reads state vectors only"),
    ],
)
def test_state_only_agents_refuse_pixels_in_one_line(algorithm, message):
    with pytest.raises(ValueError, match=rf"^{message}: .*for pixels$"):
        agents.make_agent(
            dict(algorithm=algorithm, encoder="impala_small"), seed=0, obs_dim=FRAMES, action_dim=2
        )


def test_a_state_update_ignores_aug_prob():
    """A state batch is never cropped: aug_prob draws no key, so the update equals the one without it."""
    rng = np.random.default_rng(0)
    batch = {
        "observations": rng.normal(size=(4, 3)).astype(np.float32),
        "next_observations": rng.normal(size=(4, 2, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (4, 2, 2)).astype(np.float32),
        "rewards": rng.normal(size=(4, 2)).astype(np.float32),
        "masks": np.ones((4, 2), np.float32),
        "valid": np.ones((4, 2), np.float32),
    }
    runs = [
        agents.make_agent(dict(algorithm="qc_fql", chunk_length=2, hidden_dims=[8], aug_prob=p), 0, 3, 2)
        for p in (0.0, 0.5)
    ]
    (a, _), (b, _) = (jax.jit(type(agent).update)(agent, batch) for agent in runs)
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
        (a.params, a.rng),
        (b.params, b.rng),
    )


def square_images(count: int, size: int, side: int, seed: int = 0):
    """`count` black size x size RGB frames, each with a white side x side square at a random place, and the
    action that the square's (row, column) maps to in [-1, 1]^2: a behaviour only pixels reveal."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, size - side + 1, (count, 2))
    images = np.zeros((count, size, size, 3), np.uint8)
    for image, (row, col) in zip(images, corners, strict=True):
        image[row : row + side, col : col + side] = 255
    return images, (corners / (size - side) * 2 - 1).astype(np.float32)


def test_qc_fql_learns_a_behaviour_from_pixels():
    """QC-FQL with impala_small (FQL's encoder, its full width) on 32 8x8 images of a 2x2 square whose place
    is the action: after 600 updates (batch 16) the flow-matching loss is below half its value over the
    first 10 updates, and the distilled one-step policy's action MSE is below half the actions' variance.
    That variance is the least MSE of any policy that ignores the image (the best constant is the mean
    action), so the second bound holds only if the policy reads the pixels; a loss that merely fluctuates
    does not halve. 8x8 frames keep it to about 23 CPU-s (half of it compiling; 64x64 frames took about 3
    minutes), with the same bounds. Measured (2026-12-07, 2-core EPYC): flow loss 1.56 -> 0.38 and MSE 0.079
    against a variance of 0.45, the same to 6 digits with XLA_FLAGS=--xla_cpu_max_isa=AVX2; a learning rate
    of 1e-3 instead of the default 3e-4 gave 1.53 -> 0.32 and 0.039.
    """
    images, corner_actions = map(jnp.asarray, square_images(32, size=8, side=2))
    cfg = dict(algorithm="qc_fql", chunk_length=2, hidden_dims=[32, 32], encoder="impala_small", flow_steps=5)
    agent = agents.make_agent(cfg, seed=0, obs_dim=images.shape[1:], action_dim=2)

    def update(agent, idx):
        chunk = jnp.repeat(images[idx][:, None], 2, axis=1)  # a static scene: the next frames are the same
        batch = {
            "observations": images[idx],
            "next_observations": chunk,
            "actions": jnp.repeat(corner_actions[idx][:, None], 2, axis=1),
            "rewards": jnp.zeros((16, 2)),
            "masks": jnp.ones((16, 2)),
            "valid": jnp.ones((16, 2)),
        }
        agent, info = agent.update(batch)
        return agent, jnp.stack([info["actor/bc_flow_loss"], info["actor/mse"]])

    indices = jax.random.randint(jax.random.PRNGKey(0), (600, 16), 0, 32)
    _, losses = jax.jit(lambda agent, idx: jax.lax.scan(update, agent, idx))(agent, indices)
    (flow_start, _), (flow_end, mse_end) = np.asarray(losses[:10]).mean(0), np.asarray(losses[-20:]).mean(0)
    variance = np.asarray(corner_actions).var(0).mean()
    assert flow_end < flow_start / 2, (flow_start, flow_end)
    assert mse_end < variance / 2, (mse_end, variance)


SMALL_FRAMES = (16, 16, 6)  # tracing only: the encoder's structure, not its size, decides what is counted


@pytest.mark.parametrize(
    "net, inputs",
    [
        (Critic((8,), num_qs=3, encoder="impala_small"), (jnp.ones((5, 4)),)),
        (Value((8,), encoder="impala_small"), ()),
        (Actor((8,), 4, encoder="impala_small"), ()),
        (VectorField((8,), 4, encoder="impala_small"), (jnp.ones((5, 4)), jnp.full((5, 1), 0.3))),
        (VectorField((8,), 4, encoder="impala_small"), (jnp.ones((5, 4)),)),  # a one-step policy
        (TanhGaussianActor((8,), 4, encoder="impala_small"), ()),
    ],
)
def test_a_network_on_its_encoded_features_equals_the_network_on_images(net, inputs):
    """networks.encode + apply_encoded is the same function as apply: the encoder's parameters are the
    network's own `encoder` submodule, read by both paths."""
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, *SMALL_FRAMES), dtype=np.uint8))
    params = net.init(jax.random.PRNGKey(0), images, *inputs)
    encoded = encode(net, params, images)
    assert encoded.shape == (5, 512)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        apply_encoded(net, params, encoded, *inputs),
        net.apply(params, images, *inputs),
    )


def convolved_inputs(function, *args) -> tuple[int, int]:
    """The convolutions `function(*args)` traces and the input elements they read (before XLA removes any
    repeat): N copies of an image through an encoder read N times its elements in the same convolutions."""
    found = convolutions(jax.make_jaxpr(function)(*args).jaxpr)
    return len(found), sum(math.prod(eqn.invars[0].aval.shape) for eqn in found)


@pytest.mark.parametrize(
    "algorithm, setting, values",
    [
        ("qc", "num_samples", (2, 8)),
        ("qc", "flow_steps", (2, 8)),
        ("ifql", "num_samples", (2, 8)),
        ("dqc", "num_samples", (2, 8)),
        ("qc_fql", "flow_steps", (2, 8)),
        ("qam", "flow_steps", (2, 8)),  # Euler steps, SDE steps and adjoint steps
        ("bam", "flow_steps", (2, 8)),  # Euler steps and the SDE steps it backpropagates through
    ],
)
def test_updates_and_actions_encode_once_whatever_the_samples_and_euler_steps(algorithm, setting, values):
    """Encode once: best-of-N's N copies and a flow's Euler steps reuse each network's features, so the
    convolutions an update or an action selection traces, and the elements they read, do not grow with
    num_samples or flow_steps (they did: N copies of every image went through the encoders, and every Euler
    step ran the encoder). Counted in the jaxpr, which is what the code asks for, not what XLA's
    common-subexpression pass leaves of it."""
    counts = []
    for value in values:
        cfg = dict(algorithm=algorithm, chunk_length=2, hidden_dims=[8], encoder="impala_small", aug_prob=0.0)
        cfg |= {"num_samples": 2, "policy_chunk_length": 2} if algorithm == "dqc" else {}
        agent = agents.make_agent({**cfg, setting: value}, seed=0, obs_dim=SMALL_FRAMES, action_dim=2)
        batch = pixel_batch(agent.config, frames=SMALL_FRAMES)
        key = jax.random.PRNGKey(0)
        counts.append(
            (
                convolved_inputs(type(agent).update, agent, batch),
                convolved_inputs(type(agent).sample_actions, agent, batch["observations"], key),
            )
        )
    assert counts[0] == counts[1], counts
    assert min(counts[0][0] + counts[0][1]) > 0
