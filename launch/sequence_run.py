"""The offline-to-online protocol of launch/train.py for sequence agents (RADT, DT), fine-tuned as Online DT.

    python launch/train.py agent=radt env=cube      # or agent=dt

1. Offline: `offline_steps` updates on context windows of the dataset trajectories (launch.train.Run's loop).
2. Online: `online_steps` environment steps. Each episode is conditioned on the exploration target return
   and acts with the stochastic (tanh-Gaussian) policy; at its end the whole trajectory enters the online
   replay with returns-to-go from its real rewards, and the updates owed (`utd_ratio` per step after
   `start_training`) run. Checkpoints are written at episode ends, so a resumed run replays the same episodes.
Evaluation: success, return and length of `eval_episodes` episodes conditioned on the success target (by
default the top of the sweep), and the return-alignment error |achieved - target| averaged over episodes
conditioned on `eval_num_targets` targets spread between quantiles of the dataset's (cut) returns. During an
episode R_{t+1} = min(R_t - r_t, 0): OGBench rewards are <= 0, so no positive return is left to collect.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
from tqdm import tqdm

import agents
import envs
from buffers import trajectories
from launch.evaluation import episode_seed
from launch.fused import act, insert
from launch.run import Run, next_multiple, stack

log = logging.getLogger(__name__)

# episode_seed purposes: 0 online episodes and 1 evaluation episodes, as launch/train.py; 2 the target sweep.
SWEEP_PURPOSE = 2


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


class SequenceRun(Run):
    """launch.train.Run for sequence agents: trajectory replay, target-conditioned evaluation, Online DT."""

    def build(self) -> None:
        """The agent (normalising states by the dataset's statistics), the trajectory replay and the targets
        of evaluation and exploration; a vector of one run (the agent and replay carry a run axis of 1)."""
        member = self.members[0]
        self.env, self.eval_env, train_dataset, _ = envs.make_env_and_datasets(member.cfg.env, member.seed)
        path = envs.resolve_dataset(member.cfg.env, member.seed)
        self.dataset_records = [envs.describe_dataset(member.cfg.env, path, len(train_dataset["actions"]))]
        config = agents.make_config(self.agent_settings)
        episode_limit = max(self.env.spec.max_episode_steps or 0, self.eval_env.spec.max_episode_steps or 0)
        self.replay = trajectories.make_trajectory_replay(
            train_dataset, config.context_length, config.replay_trajectories, episode_limit
        )
        longest = int(self.replay.offline.lengths.max())
        if longest > config.max_timestep:
            raise ValueError(
                f"invalid setting agent.max_timestep={config.max_timestep}: expected at least {longest}, the "
                "longest dataset trajectory, so that every timestep has its own embedding"
            )
        agent = agents.make_agent(
            self.agent_settings,
            self.cfg.seed,
            train_dataset["observations"].shape[-1],
            train_dataset["actions"].shape[-1],
        ).with_statistics(*trajectories.observation_statistics(train_dataset))
        self.agent = stack([agent])
        self.slot_length = self.replay.online.max_length  # of the run's replay, before the run axis
        returns = trajectories.trajectory_returns(self.replay.offline)
        self.replay = stack([self.replay])
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

    @property
    def single_agent(self):
        """The agent of the vector of one."""
        return jax.tree_util.tree_map(lambda leaf: leaf[0], self.agent)

    def evaluate(self, phase: str) -> float:
        cfg, config = self.cfg, self.agent.config
        agent = self.single_agent
        round_index = self.counters["eval_round"]
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), round_index)
        episodes = [
            rollout(
                act,
                agent,
                self.eval_env,
                self.success_target,
                episode_seed(cfg.seed, 1, round_index * cfg.eval_episodes + index),
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
                episode = rollout(
                    act,
                    agent,
                    self.eval_env,
                    target,
                    episode_seed(cfg.seed, SWEEP_PURPOSE, index),
                    key,
                    np.inf,
                )
                errors.append(abs(episode["return"] - target))
        metrics = {
            "eval/success": float(np.mean([episode["success"] for episode in episodes])),
            "eval/episode_return": float(np.mean([episode["return"] for episode in episodes])),
            "eval/episode_length": float(np.mean([len(episode["rewards"]) for episode in episodes])),
            "eval/return_alignment_error": float(np.mean(errors)),
        }
        self.counters["eval_round"] += 1
        self.counters["runs"][0]["success"][phase] = metrics["eval/success"]
        self.loggers[0].log(metrics, self.global_step, phase)
        for index, episode in enumerate(episodes[: cfg.eval.video_episodes]):
            self.loggers[0].log_video(f"eval/video_{index}", np.stack(episode["frames"]), self.global_step)
        return metrics["eval/success"]

    def online_phase(self) -> None:
        cfg = self.cfg
        counters = self.counters
        counters["phase"] = "online"
        self.agent = self.agent.replace(online=True)
        bar = tqdm(total=cfg.online_steps, initial=counters["env_step"], desc="online", unit="step")
        metrics: list[dict] = [{}]
        next_log = next_multiple(counters["env_step"], cfg.log_interval)
        next_eval = next_multiple(counters["env_step"], cfg.eval_interval)
        next_save = next_multiple(counters["env_step"], cfg.save_interval)
        act_key = jax.random.PRNGKey(cfg.seed + 2)
        while counters["env_step"] < cfg.online_steps:
            start = counters["env_step"]
            episode = rollout(
                explore,
                self.single_agent,
                self.env,
                self.exploration_target,
                episode_seed(cfg.seed, 0, counters["runs"][0]["episode"]),
                jax.random.fold_in(act_key, counters["runs"][0]["episode"]),
                cfg.online_steps - start,
            )
            trajectory = trajectories.pad_trajectory(
                episode["observations"], episode["actions"], episode["rewards"], self.slot_length
            )
            self.replay = insert(self.replay, stack([trajectory]))
            counters["env_step"] = step = start + len(episode["rewards"])
            counters["runs"][0]["episode"] += 1
            if episode["done"]:
                self.loggers[0].log(
                    {
                        "online/episode_return": episode["return"],
                        "online/episode_length": len(episode["rewards"]),
                        "online/success": episode["success"],
                    },
                    self.global_step,
                    "online",
                )
            owed_updates = cfg.utd_ratio * max(0, step - max(start, cfg.start_training - 1))
            if owed_updates:
                metrics = self.train([owed_updates], online=True)
            bar.update(step - bar.n)
            last = step == cfg.online_steps
            if (step >= next_log or last) and metrics[0]:
                self.log([{f"online/{k}": v for k, v in metrics[0].items()}], "online")
                next_log = next_multiple(step, cfg.log_interval)
            if step >= next_eval or last:
                bar.set_postfix(success=self.evaluate("online"))
                next_eval = next_multiple(step, cfg.eval_interval)
            if step >= next_save or last:
                self.save()
                next_save = next_multiple(step, cfg.save_interval)
            if not last:
                self.stop_if_signalled()
        bar.close()

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()
        super().close()
