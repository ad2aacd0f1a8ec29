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


def mlp(params: dict, x: np.ndarray) -> np.ndarray:
    """agents.networks.MLP from its parameter dict (Dense_i, optional LayerNorm_i)."""
    num_layers = len([name for name in params if name.startswith("Dense_")])
    for i in range(num_layers):
        x = x @ np.asarray(params[f"Dense_{i}"]["kernel"]) + np.asarray(params[f"Dense_{i}"]["bias"])
        if i + 1 < num_layers:
            x = gelu(x)
            if f"LayerNorm_{i}" in params:
                x = layer_norm(
                    x,
                    np.asarray(params[f"LayerNorm_{i}"]["scale"]),
                    np.asarray(params[f"LayerNorm_{i}"]["bias"]),
                )
    return x


def critic(params: dict, observations, actions) -> np.ndarray:
    """(num_qs, batch) values of agents.networks.Critic."""
    ensemble = params["params"]["VmapMLP_0"]
    num_qs = ensemble["Dense_0"]["kernel"].shape[0]
    inputs = np.concatenate([observations, actions], -1)
    members = [
        {name: {k: np.asarray(v)[i] for k, v in layer.items()} for name, layer in ensemble.items()}
        for i in range(num_qs)
    ]
    return np.stack([mlp(member, inputs)[:, 0] for member in members])


def vector_field(params: dict, *inputs) -> np.ndarray:
    """agents.networks.VectorField on the concatenated inputs."""
    return mlp(params["params"]["MLP_0"], np.concatenate(inputs, -1))
