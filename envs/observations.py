"""The dtype of observations everywhere after the env: uint8 frames of a visual env stay uint8 (a quarter of
float32's bytes, stored once on the device; the encoder scales them), every other observation is float32.
One rule, so the store, the online loop and evaluation agree."""

from __future__ import annotations

import numpy as np


def observation_dtype(dtype) -> type:
    """np.uint8 for uint8 observations (frames), else np.float32."""
    return np.uint8 if np.dtype(dtype) == np.uint8 else np.float32


def observation_array(observations) -> np.ndarray:
    """`observations` as an array of `observation_dtype`."""
    observations = np.asarray(observations)
    return observations.astype(observation_dtype(observations.dtype), copy=False)
