"""The engine's side of agents that learn from trajectory windows (RADT, DT), fine-tuned online as Online DT.

    python launch/train.py agent=radt env=cube      # or agent=dt

Offline, the protocol's updates sample context windows of the dataset trajectories. Online, each episode is
conditioned on the exploration target return and acts with the stochastic (tanh-Gaussian) policy; at its
end the whole trajectory enters the online replay with returns-to-go from its real rewards, and the updates
owed (`utd_ratio` per step after `start_training`) run, so events fall at episode ends and a checkpoint
never holds an open episode. Evaluation: success, return and length of `eval_episodes` episodes conditioned
on the success target (by default the top of the sweep), and the return-alignment error |achieved - target|
averaged over episodes conditioned on `eval_num_targets` targets spread between quantiles of the dataset's
(cut) returns. During an episode R_{t+1} = min(R_t - r_t, 0): OGBench rewards are <= 0, so no positive return
is left to collect. A sequence agent trains one run per process.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

import agents
import envs
from buffers import trajectories
from launch.engine.chunk_data import Data
from launch.engine.evaluation import EpisodePurpose, episode_seed
from launch.engine.fused import act, insert
from launch.engine.vector import stack

log = logging.getLogger(__name__)


@jax.jit
def explore(agent, context: dict, key: jax.Array) -> jax.Array:
    """A tanh-Gaussian sample of the agent's policy at the last step of `context`: (1, 1, action_dim)."""
    return agent.sample_actions(context, key, stochastic=True)


def context_window(observations: list, actions: list, returns_to_go: list, context_length: int) -> dict:
    """The last `context_length` steps of an episode as one right-padded window (1, K, ...) for the agent."""
    num = min(len(observations), context_length)
    first = len(observations) - num

    def padded(values):
        values = np.asarray(values[first:], np.float32)
        out = np.zeros((1, context_length) + values.shape[1:], np.float32)
        out[0, :num] = values
        return out

    return {
        "observations": padded(observations),
        "actions": padded(actions),
        "returns_to_go": padded(returns_to_go),
        "timesteps": padded(np.arange(len(observations))).astype(np.int32),
        "valid": padded(np.ones(len(observations))),
    }


def rollout(
    policy, agent, env, target: float, seed: int, key: jax.Array, max_steps: int, render: bool = False
) -> dict:
    """One episode conditioned on the target return `target`, at most `max_steps` steps.

    policy(agent, window, key) -> (1, 1, action_dim). Returns observations, actions, rewards (length, ...),
    the episode's return, success (info['success'] at the last step), done (False when cut by max_steps) and
    the rendered frames.
    """
    context_length = agent.config.context_length
    observation, info = env.reset(seed=seed)
    observations, actions, rewards, returns_to_go, frames = [], [], [], [], []
    remaining, done = float(target), False
    while not done and len(rewards) < max_steps:
        observations.append(observation)
        returns_to_go.append(remaining)
        actions.append(np.zeros(env.action_space.shape, np.float32))  # a_t is not seen when predicting a_t
        window = context_window(observations, actions, returns_to_go, context_length)
        actions[-1] = np.asarray(policy(agent, window, jax.random.fold_in(key, len(rewards))))[0, 0]
        observation, reward, terminated, truncated, info = env.step(actions[-1])
        rewards.append(float(reward))
        remaining = min(remaining - float(reward), 0.0)
        done = terminated or truncated
        if render:
            frames.append(env.render())
    return {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "return": float(sum(rewards)),
        "success": float(info.get("success", 0.0)),
        "done": done,
        "frames": frames,
    }


class Sequences:
    """Trajectory replay, target-conditioned evaluation and Online DT episodes for a vector of one run."""

    def __init__(self, run):
        if run.num_runs > 1:
            raise ValueError(
                f"agent.algorithm={run.cfg.agent.algorithm} trains one run per process: give a single seed "
                f"and env.task (found seed={run.cfg.seed}, env.task={run.cfg.env.get('task')}), or launch "
                "several with -m"
            )
        self.run = run

    def build(self) -> tuple[Data, object]:
        """The agent (normalising states by the dataset's statistics), the trajectory replay and the targets
        of evaluation and exploration; a vector of one run (the agent and replay carry a run axis of 1)."""
        run = self.run
        member = run.members[0]
        self.env, self.eval_env, train_dataset, _ = envs.make_env_and_datasets(member.cfg.env, member.seed)
        path = envs.resolve_dataset(member.cfg.env, member.seed)
        records = [envs.describe_dataset(member.cfg.env, path, len(train_dataset["actions"]))]
        config = agents.make_config(run.agent_settings)
        episode_limit = max(self.env.spec.max_episode_steps or 0, self.eval_env.spec.max_episode_steps or 0)
        replay = trajectories.make_trajectory_replay(
            train_dataset, config.context_length, config.replay_trajectories, episode_limit
        )
        longest = int(replay.offline.lengths.max())
        if longest > config.max_timestep:
            raise ValueError(
                f"invalid setting agent.max_timestep={config.max_timestep}: expected at least {longest}, the "
                "longest dataset trajectory, so that every timestep has its own embedding"
            )
        obs_dim, action_dim = train_dataset["observations"].shape[-1], train_dataset["actions"].shape[-1]
        agent = agents.make_agent(run.agent_settings, member.seed, obs_dim, action_dim).with_statistics(
            *trajectories.observation_statistics(train_dataset)
        )
        self.slot_length = replay.online.max_length  # of the run's replay, before the run axis
        returns = trajectories.trajectory_returns(replay.offline)
        low, high = np.quantile(returns, config.eval_target_quantiles)
        self.targets = np.linspace(low, high, config.eval_num_targets)
        self.success_target = float(high if config.eval_target_return is None else config.eval_target_return)
        self.exploration_target = float(
            self.success_target if config.online_target_return is None else config.online_target_return
        )
        log.info(
            "trajectories: %d (returns %.1f to %.1f), slots of %d steps; eval targets %s, success target "
            "%.1f, exploration target %.1f",
            len(returns),
            returns.min(),
            returns.max(),
            self.slot_length,
            np.round(self.targets, 1).tolist(),
            self.success_target,
            self.exploration_target,
        )
        return Data(stack([replay]), obs_dim, action_dim, records), stack([agent])

    @property
    def single_agent(self):
        """The agent of the vector of one."""
        return jax.tree_util.tree_map(lambda leaf: leaf[0], self.run.agent)

    def evaluate(self, round_index: int) -> tuple[list[dict], list[list[np.ndarray]]]:
        cfg, agent = self.run.cfg, self.single_agent
        config = agent.config
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), round_index)
        episodes = [
            rollout(
                act,
                agent,
                self.eval_env,
                self.success_target,
                episode_seed(cfg.seed, EpisodePurpose.EVAL, round_index * cfg.eval_episodes + index),
                key,
                np.inf,
                render=index < cfg.eval.video_episodes,
            )
            for index in range(cfg.eval_episodes)
        ]
        errors = []
        repeats = config.eval_episodes_per_target
        for target_index, target in enumerate(self.targets):
            for repeat in range(repeats):
                index = (round_index * len(self.targets) + target_index) * repeats + repeat
                seed = episode_seed(cfg.seed, EpisodePurpose.TARGET_SWEEP, index)
                episode = rollout(act, agent, self.eval_env, target, seed, key, np.inf)
                errors.append(abs(episode["return"] - target))
        metrics = {
            "eval/success": float(np.mean([episode["success"] for episode in episodes])),
            "eval/episode_return": float(np.mean([episode["return"] for episode in episodes])),
            "eval/episode_length": float(np.mean([len(episode["rewards"]) for episode in episodes])),
            "eval/return_alignment_error": float(np.mean(errors)),
        }
        videos = [np.stack(episode["frames"]) for episode in episodes[: cfg.eval.video_episodes]]
        return [metrics], [videos]

    def online(self) -> OnlineEpisodes:
        self.run.agent = self.run.agent.replace(online=True)
        return OnlineEpisodes(self)

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()


class OnlineEpisodes:
    """The host side of the online phase for a sequence agent: one whole episode per step of the loop."""

    def __init__(self, kind: Sequences):
        self.kind, self.run = kind, kind.run
        self.act_key = jax.random.PRNGKey(self.run.cfg.seed + 2)
        self.owed = 0
        self.metrics: list[dict] = [{}]

    def catch_up(self, every_run: bool) -> None:
        """The updates owed by the episode just played (all of them: an episode end is a chunk's end)."""
        if self.owed:
            self.metrics = self.run.update([self.owed], online=True)
            self.owed = 0

    def open_episodes(self) -> list[None]:
        return [None]  # events fall at episode ends: nothing is open

    def step(self) -> None:
        """One episode (cut at the end of the phase): its trajectory to the replay, its updates owed."""
        run, cfg, counters = self.run, self.run.cfg, self.run.counters
        start, episode_index = counters.env_step, counters.runs[0].episode
        episode = rollout(
            explore,
            self.kind.single_agent,
            self.kind.env,
            self.kind.exploration_target,
            episode_seed(cfg.seed, EpisodePurpose.ONLINE, episode_index),
            jax.random.fold_in(self.act_key, episode_index),
            cfg.online_steps - start,
        )
        trajectory = trajectories.pad_trajectory(
            episode["observations"], episode["actions"], episode["rewards"], self.kind.slot_length
        )
        run.replay = insert(run.replay, stack([trajectory]))
        counters.env_step = step = start + len(episode["rewards"])
        run.end_episode(0, episode["return"], len(episode["rewards"]), episode["success"], episode["done"])
        self.owed = cfg.utd_ratio * max(0, step - max(start, cfg.start_training - 1))
