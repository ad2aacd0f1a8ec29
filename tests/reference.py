"""Slow, obvious NumPy/Python reimplementations of the spec that tests compare the fast code against."""

from __future__ import annotations

import math

import numpy as np


def chunk(flat: dict, start: int, chunk_length: int, discount: float) -> dict:
    """Spec "Chunk batches", one start index, written as the loop it describes.

    flat: per-transition arrays observations, actions, rewards, masks, terminals, next_observations.
    """
    out = {
        "observations": flat["observations"][start],
        "actions": [],
        "rewards": [],
        "masks": [],
        "terminals": [],
        "valid": [],
        "next_observations": [],
    }
    reward_sum, mask, terminal = 0.0, 1.0, 0.0
    for k in range(chunk_length):
        t = start + k
        out["valid"].append(1.0 if k == 0 else 1.0 - out["terminals"][k - 1])
        reward_sum += discount**k * flat["rewards"][t]
        mask = min(mask, flat["masks"][t])
        terminal = max(terminal, flat["terminals"][t])
        out["actions"].append(flat["actions"][t])
        out["rewards"].append(reward_sum)
        out["masks"].append(mask)
        out["terminals"].append(terminal)
        out["next_observations"].append(flat["next_observations"][t])
    return {key: np.asarray(value, np.float32) for key, value in out.items()}


def gelu(x):
    """Flax's default (tanh-approximated) GELU."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def mlp(params: dict, x: np.ndarray, rlpd_style: bool = False, activate_final: bool = False) -> np.ndarray:
    """agents.networks.MLP from its parameter dict (Dense_i, optional LayerNorm_i): GELU then LayerNorm, or
    with `rlpd_style` LayerNorm then ReLU."""
    num_layers = len([name for name in params if name.startswith("Dense_")])
    for i in range(num_layers):
        x = x @ np.asarray(params[f"Dense_{i}"]["kernel"]) + np.asarray(params[f"Dense_{i}"]["bias"])
        if i + 1 < num_layers or activate_final:
            norm = f"LayerNorm_{i}" in params
            scale_bias = [np.asarray(params[f"LayerNorm_{i}"][k]) for k in ("scale", "bias")] if norm else []
            if rlpd_style:
                x = np.maximum(layer_norm(x, *scale_bias) if norm else x, 0.0)
            else:
                x = layer_norm(gelu(x), *scale_bias) if norm else gelu(x)
    return x


def critic(params: dict, observations, actions, rlpd_style: bool = False) -> np.ndarray:
    """(num_qs, batch) values of agents.networks.Critic."""
    ensemble = params["params"]["VmapMLP_0"]
    num_qs = ensemble["Dense_0"]["kernel"].shape[0]
    inputs = np.concatenate([observations, actions], -1)
    members = [
        {name: {k: np.asarray(v)[i] for k, v in layer.items()} for name, layer in ensemble.items()}
        for i in range(num_qs)
    ]
    return np.stack([mlp(member, inputs, rlpd_style)[:, 0] for member in members])


def vector_field(params: dict, *inputs) -> np.ndarray:
    """agents.networks.VectorField on the concatenated inputs."""
    return mlp(params["params"]["MLP_0"], np.concatenate(inputs, -1))


def value(params: dict, observations) -> np.ndarray:
    """(batch,) outputs of a one-member agents.networks.Critic used as V(s): no action input."""
    return critic(params, observations, np.zeros((len(observations), 0)))[0]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def bce(logits, targets):
    """Binary cross-entropy of sigmoid(logits) against targets, elementwise."""
    p = sigmoid(logits)
    return -(targets * np.log(p) + (1.0 - targets) * np.log(1.0 - p))


def asymmetric_loss(outputs, targets, kappa: float, method: str, value_type: str, weights) -> float:
    """DQC's implicit-maximisation loss (spec dqc.md, losses 2 and 3), one element at a time.

    outputs: (..., batch) logits (reach) or values (return); targets: broadcastable values; weights: (batch,).
    """
    outputs, targets = np.broadcast_arrays(np.asarray(outputs, np.float64), np.asarray(targets, np.float64))
    total = 0.0
    for index in np.ndindex(outputs.shape):
        output, target = outputs[index], targets[index]
        prediction = sigmoid(output) if value_type == "reach" else output
        w = kappa if target >= prediction else 1.0 - kappa
        if value_type == "reach" and method == "expectile":
            error = bce(output, target)
        elif value_type == "reach":
            # the clip bounds as float32 holds them: 1 - 1e-5 is 0.99998999... there
            clipped = float(np.clip(np.float32(target), np.float32(1e-5), np.float32(1.0 - 1e-5)))
            error = abs(output - math.log(clipped / (1.0 - clipped)))
        elif method == "expectile":
            error = (output - target) ** 2
        else:
            error = abs(output - target)
        total += w * error * weights[index[-1]]
    return total / outputs.size


def goal_chunk(flat: dict, start: int, goal: int, chunk_length: int, discount: float) -> dict:
    """Spec dqc.md "Batch: goals, chunks, rewards" for one start and goal, written as the loop it describes.

    flat: per-transition observations, actions, terminals (1 on a trajectory's last transition), oracle_reps.
    """
    final = start
    while not flat["terminals"][final]:
        final += 1
    length = min(chunk_length, final - start)
    if 0 <= goal - start < length:
        length = goal - start
    success = 1.0 if length < chunk_length else 0.0
    actions, valid = [], []
    for k in range(chunk_length):
        actions.append(flat["actions"][min(start + k, final)])
        valid.append(1.0 if start + k <= final else 0.0)
    goal_rep = flat["oracle_reps"][goal]
    return {
        "observations": np.concatenate([flat["observations"][start], goal_rep]),
        "actions": np.asarray(actions),
        "valid": np.asarray(valid),
        "backup_lengths": length,
        "backup_rewards": discount**length * success,
        "backup_masks": 1.0 - success,
        "backup_observations": np.concatenate([flat["observations"][start + length], goal_rep]),
    }
