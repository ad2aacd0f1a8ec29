"""RADT and DT: masks, zero-initialised alignment modules, losses and trajectory windows against slow
references, a return-conditioned toy fit, and tiny end-to-end runs through launch/train.py."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf
from scipy import special, stats

import agents
from agents import radt
from buffers import trajectories
from launch.engine.fused import fused_updates
from launch.engine.sequences import context_window
from launch.engine.vector import stack as stack_runs
from tests import reference
from tests.helpers import compose_config

OBS_DIM, ACTION_DIM, STEPS = 3, 2, 6
# each with its timestep embedding as configs/agent/{radt,dt}.yaml set it
VARIANTS = {
    "radt": dict(return_alignment=True, seq_ra=True, step_ra=True, learnable_timestep_embedding=False),
    "radt_seq_ra_only": dict(
        return_alignment=True, seq_ra=True, step_ra=False, learnable_timestep_embedding=False
    ),
    "radt_step_ra_only": dict(
        return_alignment=True, seq_ra=False, step_ra=True, learnable_timestep_embedding=False
    ),
    "dt": dict(return_alignment=False, seq_ra=False, step_ra=False, learnable_timestep_embedding=True),
}


def tiny_model(variant: str) -> radt.SequenceModel:
    return radt.SequenceModel(
        action_dim=ACTION_DIM,
        embed_dim=16,
        num_layers=2,
        num_heads=2,
        dropout=0.1,
        max_timestep=50,
        log_std_min=-5.0,
        log_std_max=2.0,
        **VARIANTS[variant],
    )


def random_inputs(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(1, steps, OBS_DIM)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (1, steps, ACTION_DIM)).astype(np.float32),
        "returns_to_go": rng.normal(size=(1, steps)).astype(np.float32),
        "timesteps": np.arange(3, 3 + steps, dtype=np.int32)[None],
        "valid": np.ones((1, steps), bool),
    }


def initialised(model, inputs, seed=0):
    """Parameters drawn at random at a larger scale than the initialisation (whose 0.02 weights and closed
    gates would hide most paths), so that every input visibly reaches the predictions allowed to see it."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(seed), *(inputs[key] for key in INPUT_ORDER))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda leaf: rng.normal(0.0, 0.3, leaf.shape).astype(np.float32), shapes)


INPUT_ORDER = ("observations", "actions", "returns_to_go", "timesteps", "valid")


@functools.partial(jax.jit, static_argnums=0)
def apply(model, params, inputs):
    return model.apply(params, *(inputs[key] for key in INPUT_ORDER))


def predict(model, params, inputs):
    """mean and log-std side by side: (batch, steps, 2 * action_dim)."""
    mean, log_std = apply(model, params, inputs)
    return np.concatenate([np.asarray(mean), np.asarray(log_std)], -1)


def stack(windows):
    return {key: np.concatenate([window[key] for window in windows]) for key in windows[0]}


# ---- masks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_prediction_sees_a_future_state_action_or_return(variant):
    model = tiny_model(variant)
    inputs = random_inputs()
    params = initialised(model, inputs)
    cases, windows = [], [inputs]
    for step in range(STEPS):
        for key, first_affected in (("observations", step), ("returns_to_go", step), ("actions", step + 1)):
            changed = {k: v.copy() for k, v in inputs.items()}
            changed[key][0, step] += 1.5
            cases.append((key, step, first_affected))
            windows.append(changed)
    base, *outs = predict(model, params, stack(windows))  # one call for every perturbation
    for (key, step, first_affected), out in zip(cases, outs, strict=True):
        np.testing.assert_allclose(
            out[:first_affected],
            base[:first_affected],
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"{key}[{step}] leaked into an earlier prediction",
        )
        if first_affected < STEPS:  # the input does reach the first prediction allowed to see it
            assert np.abs(out[first_affected] - base[first_affected]).max() > 1e-3, (key, step)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_never_changes_a_valid_prediction(variant):
    model = tiny_model(variant)
    num_valid = 3
    inputs = random_inputs(seed=1, steps=num_valid)
    params = initialised(model, random_inputs())
    unpadded = predict(model, params, inputs)[0]
    garbage = random_inputs(seed=2, steps=STEPS - num_valid)
    garbage["valid"][:] = False
    garbage["timesteps"][:] = 40
    left = {key: np.concatenate([garbage[key], value], axis=1) for key, value in inputs.items()}
    right = {key: np.concatenate([value, garbage[key]], axis=1) for key, value in inputs.items()}
    out_left, out_right = predict(model, params, stack([left, right]))
    np.testing.assert_allclose(out_left[STEPS - num_valid :], unpadded, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_right[:num_valid], unpadded, rtol=1e-5, atol=1e-5)


def test_attention_masks_against_loops():
    valid = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)
    for tokens_per_step in (2, 3):
        masks = radt.attention_masks(jnp.asarray(valid), tokens_per_step)
        self_mask, cross_mask = (np.asarray(mask) for mask in masks)
        tokens = 4 * tokens_per_step
        for b in range(2):
            for q in range(tokens):
                for k in range(tokens):
                    assert bool(self_mask[b, 0, q, k]) == (k <= q and valid[b, k // tokens_per_step])
                for step in range(4):
                    expected = step <= q // tokens_per_step and valid[b, step]
                    assert bool(cross_mask[b, 0, q, step]) == expected


# ---- the alignment modules at initialisation --------------------------------------------------------------


def np_attention(params, queries, keys, values, mask):
    """Multi-head softmax attention written out; params of radt.Attention."""
    q = np.einsum("bld,dhk->blhk", queries, params["query"]["kernel"])
    k = np.einsum("bld,dhk->blhk", keys, params["key"]["kernel"])
    v = np.einsum("bld,dhk->blhk", values, params["value"]["kernel"])
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    logits = np.where(mask, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhqs,bshk->bqhk", weights, v)
    return np.einsum("bqhk,hkd->bqd", out, params["out"]["kernel"]) + params["out"]["bias"]


def np_feed_forward(params, x):
    hidden = x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
    hidden = 0.5 * hidden * (1.0 + special.erf(hidden / math.sqrt(2.0)))
    return hidden @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def np_norm(x, params=None):
    """LayerNorm; without params the affine-free one of StepRA (eps 1e-6)."""
    if params is None:
        return reference.layer_norm(x, 1.0, 0.0)
    return reference.layer_norm(x, params["scale"], params["bias"])


def block_inputs(steps=4, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    valid = np.array([[1, 1, 1, 0]], bool)
    self_mask, cross_mask = (np.asarray(m) for m in radt.attention_masks(jnp.asarray(valid), 2))
    return (
        rng.normal(size=(1, 2 * steps, dim)).astype(np.float32),
        rng.normal(size=(1, steps, dim)).astype(np.float32),
        rng.normal(size=(1, steps, dim)).astype(np.float32),
        self_mask,
        cross_mask,
    )


def test_attention_matches_numpy():
    x, returns, _, self_mask, cross_mask = block_inputs()
    attention = radt.Attention(num_heads=2, dropout=0.1)
    params = attention.init(jax.random.PRNGKey(0), x, returns, returns, cross_mask, True)
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # a non-zero output bias too
    out = attention.apply(params, x, returns, returns, cross_mask, True)
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    np.testing.assert_allclose(out, np_attention(p, x, returns, returns, cross_mask), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("step_ra", [True, False])
def test_zero_initialised_alignment_leaves_plain_residual_blocks(step_ra):
    """Gates closed at initialisation: StepRA's modulation is zero (LN(x) * (1 + 0) + 0) and SeqRA's gate
    alpha is zero (x <- y + x)."""
    x, returns, time, self_mask, cross_mask = block_inputs()
    block = radt.Block(num_heads=2, dropout=0.1, seq_ra=True, step_ra=step_ra)
    params = block.init(jax.random.PRNGKey(0), x, returns, time, self_mask, cross_mask, True)
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    zero_init = ["gate"] + (["modulation"] if step_ra else [])
    assert all(not np.any(leaf) for name in zero_init for leaf in jax.tree_util.tree_leaves(p[name]))
    out = np.asarray(block.apply(params, x, returns, time, self_mask, cross_mask, True))

    keys, values = np_norm(returns + time, p["norm_k"]), np_norm(returns, p["norm_v"])
    if step_ra:  # post-norm
        h = np_norm(x + np_attention(p["self_attention"], x, x, x, self_mask))
        h = np_norm(h + np_attention(p["return_attention"], h, keys, values, cross_mask))
        expected = np_norm(h + np_feed_forward(p["feed_forward"], h))
    else:  # pre-norm with affine LayerNorms
        normed = np_norm(x, p["norm_self_attention"])
        h = x + np_attention(p["self_attention"], normed, normed, normed, self_mask)
        h = h + np_attention(
            p["return_attention"], np_norm(h, p["norm_return_attention"]), keys, values, cross_mask
        )
        expected = h + np_feed_forward(p["feed_forward"], np_norm(h, p["norm_feed_forward"]))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)

    def open_gates(path, leaf):
        return leaf + 0.5 if any(getattr(key, "key", None) in zero_init for key in path) else leaf

    opened = jax.tree_util.tree_map_with_path(open_gates, params)
    opened_out = np.asarray(block.apply(opened, x, returns, time, self_mask, cross_mask, True))
    assert np.abs(opened_out - out).max() > 1e-2  # the comparison above does see the gates


# ---- the alignment modules opened -------------------------------------------------------------------------


def np_block(p, x, returns, time, self_mask, cross_mask, seq_ra, step_ra):
    """The block of spec radt.md written out. StepRA: post-norm; affine-free LayerNorms modulated by the six
    (four without SeqRA) vectors of Linear(SiLU(c_t)), in the official code's chunk order (scale, shift) per
    sub-layer, step t's vectors shared by s_t and a_t. Without StepRA: pre-norm with affine LayerNorms.
    SeqRA: y = CrossAttn(x, LN_k(c + e), LN_v(c)), alpha = Linear([y, x]), x <- (1 + alpha) * y + x."""
    stages = ["self_attention", *(["return_attention"] if seq_ra else []), "feed_forward"]
    if step_ra:
        silu = returns / (1.0 + np.exp(-returns))
        modulation = silu @ p["modulation"]["kernel"] + p["modulation"]["bias"]
        chunks = np.split(np.repeat(modulation, 2, axis=1), 2 * len(stages), axis=-1)
        scale = {stage: chunks[2 * i] for i, stage in enumerate(stages)}
        shift = {stage: chunks[2 * i + 1] for i, stage in enumerate(stages)}

    def norm(h, stage):
        if step_ra:
            return np_norm(h) * (1.0 + scale[stage]) + shift[stage]
        return np_norm(h, p[f"norm_{stage}"])

    def gated_return_attention(queries, residual):
        keys, values = np_norm(returns + time, p["norm_k"]), np_norm(returns, p["norm_v"])
        y = np_attention(p["return_attention"], queries, keys, values, cross_mask)
        alpha = np.concatenate([y, residual], -1) @ p["gate"]["kernel"] + p["gate"]["bias"]
        return (1.0 + alpha) * y + residual

    if step_ra:
        x = norm(x + np_attention(p["self_attention"], x, x, x, self_mask), "self_attention")
        if seq_ra:
            x = norm(gated_return_attention(x, x), "return_attention")
        return norm(x + np_feed_forward(p["feed_forward"], x), "feed_forward")
    normed = norm(x, "self_attention")
    x = x + np_attention(p["self_attention"], normed, normed, normed, self_mask)
    if seq_ra:
        x = gated_return_attention(norm(x, "return_attention"), x)
    return x + np_feed_forward(p["feed_forward"], norm(x, "feed_forward"))


@pytest.mark.parametrize(("seq_ra", "step_ra"), [(True, True), (False, True), (True, False)])
def test_an_opened_block_matches_the_spec(seq_ra, step_ra):
    """Every parameter drawn at random, the gate and the modulation included, dropout off: a swapped scale and
    shift, a missing SiLU or the gate's inputs in the other order would each change the output."""
    x, returns, time, self_mask, cross_mask = block_inputs()
    block = radt.Block(num_heads=2, dropout=0.1, seq_ra=seq_ra, step_ra=step_ra)
    shapes = jax.eval_shape(
        lambda key: block.init(key, x, returns, time, self_mask, cross_mask, True), jax.random.PRNGKey(0)
    )
    rng = np.random.default_rng(3)
    params = jax.tree_util.tree_map(lambda leaf: rng.normal(0.0, 0.3, leaf.shape).astype(np.float32), shapes)
    opened = {"gate", "modulation"} & set(params["params"])
    assert opened == {name for name, on in (("gate", seq_ra), ("modulation", step_ra)) if on}
    out = np.asarray(block.apply(params, x, returns, time, self_mask, cross_mask, True))
    p = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, np.float64), params["params"])
    expected = np_block(p, x, returns, time, self_mask, cross_mask, seq_ra, step_ra)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_attention_dropout_masks_are_drawn_per_window_and_head():
    """Two identical windows through two heads with identical projections: without dropout the four
    (window, head) copies agree; with dropout each copy drops its own attention entries, so they disagree
    even where the output dropout kept both (a mask shared by the batch and heads would leave those equal)."""
    dim, heads, steps = 8, 2, 8
    head_dim = dim // heads
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(1, steps, dim)), 2, axis=0).astype(np.float32)
    mask = np.ones((2, 1, steps, steps), bool)

    def same_for_every_head():
        return np.repeat(rng.normal(size=(dim, 1, head_dim)), heads, axis=1).astype(np.float32)

    out_kernel = np.zeros((heads, head_dim, dim), np.float32)  # head h -> output dims h*head_dim...
    for h in range(heads):
        out_kernel[h, :, h * head_dim : (h + 1) * head_dim] = np.eye(head_dim)
    params = {
        "params": {
            **{name: {"kernel": same_for_every_head()} for name in ("query", "key", "value")},
            "out": {"kernel": out_kernel, "bias": np.zeros(dim, np.float32)},
        }
    }
    attention = radt.Attention(num_heads=heads, dropout=0.3)

    def copies(out):
        out = np.asarray(out).reshape(2, steps, heads, head_dim)
        return [out[window, :, head] for window in range(2) for head in range(heads)]

    evaluated = copies(attention.apply(params, x, x, x, mask, True))
    for copy in evaluated[1:]:
        np.testing.assert_allclose(copy, evaluated[0], rtol=1e-6)
    trained = copies(attention.apply(params, x, x, x, mask, False, rngs={"dropout": jax.random.PRNGKey(0)}))
    for i in range(len(trained)):
        for j in range(i + 1, len(trained)):
            kept = (trained[i] != 0) & (trained[j] != 0)
            assert kept.sum() >= 5, (i, j)
            assert not np.allclose(trained[i][kept], trained[j][kept], rtol=1e-3), (i, j)


# ---- timestep embeddings ----------------------------------------------------------------------------------


def test_sinusoid_table_matches_the_formula():
    for dim in (6, 7):
        table = radt.sinusoid_table(1001, dim)
        assert table.shape == (1001, dim) and table.dtype == np.float32
        for t in (0, 1, 37, 1000):
            for j in range(dim):
                angle = t / 10000.0 ** (2 * (j // 2) / dim)
                expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
                assert table[t, j] == pytest.approx(expected, abs=1e-6), (t, j)


def test_radt_embeds_timesteps_by_the_fixed_table_and_a_linear_layer():
    model = tiny_model("radt")
    inputs = random_inputs()
    inputs["timesteps"][0, -1] = 70  # past max_timestep=50: clipped to the last row
    params = initialised(model, inputs)
    _, state = model.apply(params, *(inputs[key] for key in INPUT_ORDER), capture_intermediates=True)
    time = np.asarray(state["intermediates"]["timestep"]["__call__"][0])
    layer = params["params"]["timestep"]
    table = radt.sinusoid_table(50, 16)[np.minimum(inputs["timesteps"], 49)]
    np.testing.assert_allclose(time, table @ layer["kernel"] + layer["bias"], rtol=1e-5, atol=1e-5)


def test_radt_defaults_to_the_sinusoidal_table_and_dt_to_a_learned_one():
    defaults = {}
    for name in ("radt", "dt"):
        agent_cfg = compose_config(f"agent={name}", "~env").agent
        defaults[name] = agent_cfg.learnable_timestep_embedding
        small = {**OmegaConf.to_container(agent_cfg), "num_layers": 1, "embed_dim": 8, "context_length": 2}
        agent = agents.make_agent(small, 0, OBS_DIM, ACTION_DIM)
        embedding = agent.params["model"]["params"]["timestep"]
        shapes = {key: value.shape for key, value in embedding.items()}
        expected = {"embedding": (1001, 8)} if name == "dt" else {"kernel": (8, 8), "bias": (8,)}
        assert shapes == expected, name
    assert defaults == {"radt": False, "dt": True}
    assert radt.Config().learnable_timestep_embedding is False


# ---- losses -----------------------------------------------------------------------------------------------


def make_agent(variant="radt", **overrides):
    config = dict(
        algorithm="radt",
        context_length=4,
        num_layers=1,
        num_heads=1,
        embed_dim=16,
        dropout=0.0,
        warmup_steps=1,
        max_timestep=50,
        return_scale=2.0,
        **VARIANTS[variant],
    )
    config.update(overrides)
    return agents.make_agent(config, seed=0, obs_dim=OBS_DIM, action_dim=ACTION_DIM)


def loss_batch(seed=0):
    rng = np.random.default_rng(seed)
    shape = (5, 4)
    valid = np.ones(shape, np.float32)
    valid[0, 2:] = 0.0
    actions = rng.uniform(-1, 1, shape + (ACTION_DIM,)).astype(np.float32)
    actions[1, 0, 0] = 1.0  # on the bound: the likelihood is taken just inside it
    return {
        "observations": rng.normal(size=shape + (OBS_DIM,)).astype(np.float32),
        "actions": actions,
        "returns_to_go": rng.normal(size=shape).astype(np.float32),
        "timesteps": np.tile(np.arange(4, dtype=np.int32), (5, 1)),
        "valid": valid,
    }


def np_tanh_gaussian_log_prob(pre_tanh, mean, log_std):
    log_prob = stats.norm.logpdf(pre_tanh, mean, np.exp(log_std)) - np.log(1.0 - np.tanh(pre_tanh) ** 2)
    return log_prob.sum(-1)


@pytest.fixture(scope="module")
def small_agent():
    return make_agent()


def test_losses_match_numpy(small_agent):
    agent = small_agent
    batch = loss_batch()
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(5, 4, ACTION_DIM)).astype(np.float32)
    log_std = rng.uniform(-2, 0.5, (5, 4, ACTION_DIM)).astype(np.float32)
    noise = {"entropy": rng.normal(size=(5, 4, ACTION_DIM)).astype(np.float32)}
    valid = batch["valid"]

    mse, _ = agent.action_loss(batch, mean)
    squared = ((np.tanh(mean) - batch["actions"]) ** 2).mean(-1)
    assert float(mse) == pytest.approx((squared * valid).sum() / valid.sum(), rel=1e-5)

    loss, info = agent.policy_loss(batch, mean, log_std, 0.3, noise)
    actions = np.clip(batch["actions"], -1 + radt.ACTION_EPS, 1 - radt.ACTION_EPS)
    log_likelihood = np_tanh_gaussian_log_prob(np.arctanh(actions), mean, log_std)
    log_likelihood = (log_likelihood * valid).sum() / valid.sum()
    sample = mean + np.exp(log_std) * noise["entropy"]
    entropy = -(np_tanh_gaussian_log_prob(sample, mean, log_std) * valid).sum() / valid.sum()
    assert float(info["log_likelihood"]) == pytest.approx(log_likelihood, rel=1e-4)
    assert float(info["entropy"]) == pytest.approx(entropy, rel=1e-4)
    assert float(loss) == pytest.approx(-(log_likelihood + 0.3 * entropy), rel=1e-4)

    # the temperature falls while the entropy is above its target (-action_dim), rises below it
    def temperature_grad(entropy):
        return float(jax.grad(lambda t: agent.temperature_loss(t, jnp.float32(entropy))[0])(jnp.float32(0.0)))

    assert temperature_grad(-1.0) > 0 > temperature_grad(-3.0)
    assert agent.target_entropy == -ACTION_DIM


def test_online_the_policy_loss_trains_the_transformer_too(small_agent):
    agent = small_agent.replace(online=True)
    batch = loss_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(0), 5, 4)
    grads, info = jax.jit(jax.grad(agent.total_loss, has_aux=True))(agent.params, batch, noise)

    def policy_loss(params):
        mean, log_std = agent.forward(params, batch, noise["dropout"])
        return agent.policy_loss(batch, mean, log_std, jnp.exp(agent.params["log_temperature"]), noise)[0]

    expected = jax.jit(jax.grad(policy_loss))(agent.params)["model"]
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads["model"], expected
    )
    assert float(grads["log_temperature"]) != 0.0
    assert set(info) >= {"actor/mse", "actor/log_likelihood", "actor/entropy", "actor/temperature"}


def test_offline_update_is_a_clipped_adamw_step_on_the_mse_alone(small_agent):
    """Even with the log-std head's large likelihood gradients in the same update, the transformer takes the
    plain RADT step: AdamW on the MSE gradient clipped to grad_clip (the test agent has no warm-up)."""
    agent = small_agent
    batch = loss_batch()
    new, info = jax.jit(lambda a, b: a.update(b))(agent, batch)
    noise = agent.draw_noise(jax.random.split(agent.rng)[1], 5, 4)

    def trunk(tree):
        return {name: value for name, value in tree["params"].items() if name != "log_std"}

    def mse(model_params):
        mean = agent.forward({"model": model_params}, batch, noise["dropout"])[0]
        return agent.action_loss(batch, mean)[0]

    grads = trunk(jax.jit(jax.grad(mse))(agent.params["model"]))
    assert float(optax.tree.norm(grads)) > agent.config.grad_clip  # so the clipping matters
    optimizer = optax.chain(
        optax.clip_by_global_norm(agent.config.grad_clip),
        optax.adamw(agent.config.lr, weight_decay=agent.config.weight_decay),
    )

    @jax.jit
    def step(params, grads):
        return optax.apply_updates(params, optimizer.update(grads, optimizer.init(params), params)[0])

    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        trunk(new.params["model"]),
        step(trunk(agent.params["model"]), grads),
    )
    assert float(info["grad/norm"]) == pytest.approx(float(optax.tree.norm(grads)), rel=1e-5)
    heads = [a.params["model"]["params"]["log_std"]["kernel"] for a in (agent, new)]
    assert not np.allclose(*heads)  # while the log-std head fits the likelihood


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match=r"invalid setting agent.chunk_length=5: expected 1"):
        agents.make_config({"algorithm": "radt", "chunk_length": 5})
    with pytest.raises(ValueError, match=r"return_alignment=True: expected false when seq_ra and step_ra"):
        agents.make_config({"algorithm": "radt", "seq_ra": False, "step_ra": False})
    with pytest.raises(ValueError, match=r"agent.num_heads=3: expected a divisor of embed_dim=128"):
        agents.make_config({"algorithm": "radt", "num_heads": 3})
    cfg = compose_config("agent=dt", "~env")
    assert cfg.batch_size == 64 and cfg.agent.name == "dt" and not cfg.agent.return_alignment
    assert cfg.agent.chunk_length == 1 and cfg.agent.context_length == 20


# ---- a return-conditioned toy problem ---------------------------------------------------------------------


def toy_dataset(num=40, length=8, seed=0):
    """Half the trajectories act +0.6 and collect 0 per step, half act -0.6 and collect -1 per step, from the
    same state distribution: only the return tells them apart."""
    rng = np.random.default_rng(seed)
    sign = np.repeat(np.where(np.arange(num) % 2 == 0, 1.0, -1.0), length).astype(np.float32)
    total = num * length
    return {
        "observations": rng.normal(size=(total, 1)).astype(np.float32),
        "actions": np.stack([0.6 * sign, 0.6 * sign], -1).astype(np.float32),
        "rewards": np.where(sign > 0, 0.0, -1.0).astype(np.float32),
        "masks": np.ones(total, np.float32),
        "terminals": np.tile(np.eye(length, dtype=np.float32)[-1], num),
    }


@pytest.mark.parametrize("variant", ["radt", "dt"])
def test_a_higher_target_return_gives_the_actions_that_earned_it(variant):
    data = toy_dataset()
    replay = trajectories.make_trajectory_replay(data, 4, 10)
    config = dict(
        algorithm="radt",
        context_length=4,
        num_layers=1,
        embed_dim=32,
        dropout=0.0,
        lr=1e-3,
        warmup_steps=10,
        return_scale=8.0,
        max_timestep=16,
        **VARIANTS[variant],
    )
    agent = agents.make_agent(config, seed=0, obs_dim=1, action_dim=2)
    agent = agent.with_statistics(*trajectories.observation_statistics(data))
    agents_, _, metrics, first_bad, _ = fused_updates(
        stack_runs([agent]),
        jax.random.PRNGKey(0)[None],
        stack_runs([replay]),
        jnp.int32([300]),
        batch_size=32,
        online=False,
    )
    agent = jax.tree_util.tree_map(lambda leaf: leaf[0], agents_)
    assert int(first_bad[0]) == -1 and float(metrics["actor/mse"][0]) < 0.05
    states = list(np.random.default_rng(5).normal(size=(3, 1)).astype(np.float32))
    actions = [np.zeros(2, np.float32)] * 3
    high = context_window(states, actions, [0.0, 0.0, 0.0], 4)
    low = context_window(states, actions, [-8.0, -7.0, -6.0], 4)
    high_action = np.asarray(agent.sample_actions(high, jax.random.PRNGKey(0)))
    low_action = np.asarray(agent.sample_actions(low, jax.random.PRNGKey(0)))
    assert high_action.min() > 0.3 and low_action.max() < -0.3
