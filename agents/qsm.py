"""QSM (Q-score matching, Psenka et al. 2024) and DAC (diffusion actor-critic, Fang et al. 2025), baselines of
QAM (Li & Levine 2026) that its authors run as one agent, ColinQiyangLi/qam agents/dcgql.py, chosen by
`actor_loss_type`.

The policy is a DDPM over the flat chunk (agents/ddpm.py) whose noise predictor eps(s, x_t, t) (a mish MLP
with a learnable Fourier embedding of t, networks.DDPMNoise) is trained on noisy dataset chunks x_t = sqrt(
alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps by alpha times the DDPM loss ||eps - eps(s, x_t, t)||^2 plus
  QSM: ||-inv_temp grad_a Q(s, x_t) - eps(s, x_t, t)||^2, the score matched to the critic's action gradient;
  DAC: sqrt(1 - alpha_bar_t) <grad_a Q(s, x_t), eps(s, x_t, t)> / dim, which pushes the noise prediction
       against the gradient (inv_temp unused),
with grad_a Q the gradient of the target critics' mean at the noisy chunk. It acts by T = 10 reverse steps
(`ddpm.sample`); the chunked critic bootstraps from such a sample at s_{t+h}, mean - rho * std over 10 critics
(`critic.bootstrap`), and the summed losses take one Adam step on a gradient clipped to global norm 1.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import ddpm, step
from agents.config import AgentConfig, sweepable
from agents.networks import Critic, DDPMNoise, apply_encoded, encode, example_observations

ACTOR_LOSS_TYPES = ("qsm", "dac")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/dcgql.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/agent/qsm.yaml and dac.yaml hold the per-domain values.

    clip_sampler_before: clip the predicted clean chunk and take the DDPM posterior step (DAC's runs); False
    jumps to the unclipped predicted chunk at every step (`ddpm.sample` rule 'x0'). clip_sampler_after: clip
    each step's x_{t-1} (QSM's runs). use_target_critic_grad: grad_a Q from the target critics, else the
    online ones (held fixed). clip_grad: the global norm the whole gradient is clipped to (None: none).
    """

    TAKES_RHO = True  # its target reads rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    rho: float | None = 0.5  # mean - rho * std over the target critics (critic.bootstrap); None: their mean
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    diffusion_steps: int = 10
    diffusion_schedule: str = "vp"  # ddpm.SCHEDULES; the authors' 'linear' is 'ddpm_linear' here
    time_dim: int = 64  # the Fourier embedding of the step
    actor_loss_type: str = "qsm"  # ACTOR_LOSS_TYPES
    inv_temp: float = sweepable(1.0)  # QSM: the scale of the score target -inv_temp grad_a Q
    alpha: float = sweepable(0.0)  # weight of the DDPM (BC) loss
    clip_sampler_before: bool = False
    clip_sampler_after: bool = False
    use_target_critic_grad: bool = True
    clip_grad: float | None = 1.0
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}

    def __post_init__(self):
        if self.actor_loss_type not in ACTOR_LOSS_TYPES:
            raise ValueError(
                f"agent.actor_loss_type must be one of {ACTOR_LOSS_TYPES}, got {self.actor_loss_type!r}"
            )
        if self.diffusion_schedule not in ddpm.SCHEDULES:
            raise ValueError(
                f"agent.diffusion_schedule must be one of {ddpm.SCHEDULES}, got {self.diffusion_schedule!r}"
            )


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    noise_net: DDPMNoise = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        noise_net = DDPMNoise(
            config.hidden_dims, policy_dim, config.time_dim, config.actor_layer_norm, config.encoder
        )
        rng, critic_key, actor_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "actor": noise_net.init(actor_key, obs, act, jnp.zeros((1, 1))),
        }
        optimizer = step.adam(config.lr)
        if config.clip_grad is not None:
            optimizer = step.clipped_adam(config.lr, config.clip_grad)
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            noise_net=noise_net,
            **step.training_state(config, params, optimizer=optimizer),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def betas(self):
        """beta_1..beta_T, (diffusion_steps,)."""
        return ddpm.beta_schedule(self.config.diffusion_schedule, self.config.diffusion_steps)

    def policy(self, actor_params: dict, observations, noise: jax.Array, step_noise: jax.Array) -> jax.Array:
        """The DDPM's flat chunks (batch, policy_dim) from x_T = noise (batch, policy_dim) and the steps'
        fresh noise (diffusion_steps, batch, policy_dim), sigma_t^2 = beta_t; not clipped at the end (the
        authors' sampler; their runs clip each step or the predicted chunk, so it lies in [-1, 1])."""
        cfg = self.config
        features = encode(self.noise_net, actor_params, observations)

        def eps(x, t):
            times = jnp.full((*x.shape[:-1], 1), float(t))
            return apply_encoded(self.noise_net, actor_params, features, x, times)

        return ddpm.sample(
            eps,
            noise,
            step_noise,
            self.betas(),
            rule="posterior" if cfg.clip_sampler_before else "x0",
            clip_x0=cfg.clip_sampler_before,
            noise_scale="beta",
            clip_steps=cfg.clip_sampler_after,
        )

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """(batch, steps, action_dim), steps = chunk_length or 1; observations: (batch, obs_dim)."""
        noise_key, steps_key = jax.random.split(key)
        shape = (observations.shape[0], self.policy_dim)
        step_noise = jax.random.normal(steps_key, (self.config.diffusion_steps, *shape))
        actions = self.policy(
            self.params["actor"], observations, jax.random.normal(noise_key, shape), step_noise
        )
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 4)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),
            "next_steps": jax.random.normal(keys[1], (self.config.diffusion_steps, *shape)),
            "eps": jax.random.normal(keys[2], shape),
            "steps": jax.random.randint(keys[3], (batch_size,), 1, self.config.diffusion_steps + 1),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Chunk-level TD; the target bootstraps from the DDPM's chunk at s_{t+h} (its parameters held
        fixed) and the target critics' mean - rho * std."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_actions = self.policy(
            jax.lax.stop_gradient(params["actor"]),
            next_observations,
            noise["next_actions"],
            noise["next_steps"],
        )
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, "mean", cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        return td.regression(qs, target, batch["valid"])

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """alpha * DDPM loss + the QSM or DAC term at the noisy dataset chunk x_t, t = noise['steps'].

        Each chunk's loss is raised to the power valid[h-1] (the authors' mask): a chunk crossing an episode
        end adds 1 to the mean and no gradient, which is the gradient of weighting it by 0.
        """
        cfg = self.config
        observations = batch["observations"]
        x0 = td.critic_actions(batch["actions"], cfg.action_chunking)
        alpha_bar = jnp.asarray(ddpm.alpha_bars(self.betas()), jnp.float32)[noise["steps"]][:, None]
        noisy = ddpm.forward(x0, noise["eps"], alpha_bar)
        critic = self.target_critic if cfg.use_target_critic_grad else jax.lax.stop_gradient(params["critic"])
        critic_features = encode(self.critic_net, critic, observations)

        def mean_q(actions):
            return apply_encoded(self.critic_net, critic, critic_features, actions).mean(axis=0).sum()

        q_grad = jax.grad(mean_q)(noisy)
        times = noise["steps"][:, None].astype(jnp.float32)
        eps_pred = self.noise_net.apply(params["actor"], observations, noisy, times)
        valid = batch["valid"][:, -1]
        bc_loss = (jnp.square(noise["eps"] - eps_pred).mean(-1) ** valid).mean()
        if cfg.actor_loss_type == "qsm":
            per_chunk = jnp.square(-cfg.inv_temp * q_grad - eps_pred).mean(-1)
        else:
            per_chunk = (jnp.sqrt(1.0 - alpha_bar) * q_grad * eps_pred).mean(-1)
        q_score_loss = (per_chunk**valid).mean()
        loss = bc_loss * cfg.alpha + q_score_loss
        return loss, {"actor_loss": loss, "bc_loss": bc_loss, "q_score_loss": q_score_loss}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise), actor=self.actor_loss(batch, params, noise)
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One clipped Adam step on the summed critic and actor losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
