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
is left to collect.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

import agents
import envs
from buffers import trajectories
from launch.engine.chunk_data import Data
from launch.engine.episodes import EpisodePurpose, OnlineRuns, episode_seed, online_seed, reopen
from launch.engine.evaluation import stop_at_a_signal
from launch.engine.fused import act, explore_runs, insert
from launch.engine.vector import stack

log = logging.getLogger(__name__)


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
    if render:  # these envs live in the trainer, which loads a renderer only for videos
        envs.headless.load_renderer()
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
        stop_at_a_signal(f"at step {len(rewards)} of an episode")
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
    """Trajectory replays, target-conditioned evaluation and Online DT episodes for a vector of runs. Each
    run holds its own replay (offline trajectories with its task's returns-to-go, and its online slots)."""

    def __init__(self, run):
        self.run = run
        self.eval_envs: list = []

    def build(self) -> tuple[Data, object]:
        """Each run's agent (normalising states by its dataset's statistics) and trajectory replay, stacked on
        the run axis, and its targets of evaluation and exploration."""
        run = self.run
        replays, agents_, records = [], [], []
        self.targets, self.success_targets, self.exploration_targets = [], [], []
        for member, settings in zip(run.members, run.member_settings, strict=True):
            env, eval_env, train_dataset, _ = envs.make_env_and_datasets(member.cfg.env, member.seed)
            self.eval_envs.append(eval_env)
            path = envs.resolve_dataset(member.cfg.env, member.seed)
            records.append(envs.describe_dataset(member.cfg.env, path, len(train_dataset["actions"])))
            config = agents.make_config(settings)
            episode_limit = max(env.spec.max_episode_steps or 0, eval_env.spec.max_episode_steps or 0)
            env.close()  # online, the run's env is one of the vector's
            replay = trajectories.make_trajectory_replay(
                train_dataset, config.context_length, config.replay_trajectories, episode_limit
            )
            longest = int(replay.offline.lengths.max())
            if longest > config.max_timestep:
                raise ValueError(
                    f"invalid setting agent.max_timestep={config.max_timestep}: expected at least {longest}, "
                    "the longest dataset trajectory, so that every timestep has its own embedding"
                )
            obs_dim, action_dim = train_dataset["observations"].shape[-1], train_dataset["actions"].shape[-1]
            agent = agents.make_agent(settings, member.seed, obs_dim, action_dim)
            agents_.append(agent.with_statistics(*trajectories.observation_statistics(train_dataset)))
            replays.append(replay)
            self.slot_length = replay.online.max_length
            returns = trajectories.trajectory_returns(replay.offline)
            low, high = np.quantile(returns, config.eval_target_quantiles)
            success = float(high if config.eval_target_return is None else config.eval_target_return)
            self.targets.append(np.linspace(low, high, config.eval_num_targets))
            self.success_targets.append(success)
            self.exploration_targets.append(
                success if config.online_target_return is None else float(config.online_target_return)
            )
            log.info(
                "%s: trajectories %d (returns %.1f to %.1f), slots of %d steps; eval targets %s, success "
                "target %.1f, exploration target %.1f",
                member.run_dir.name,
                len(returns),
                returns.min(),
                returns.max(),
                self.slot_length,
                np.round(self.targets[-1], 1).tolist(),
                self.success_targets[-1],
                self.exploration_targets[-1],
            )
        return Data(stack(replays), obs_dim, action_dim, records), stack(agents_)

    def agent_of(self, index: int):
        """Run `index`'s agent, without the run axis."""
        return jax.tree_util.tree_map(lambda leaf: leaf[index], self.run.agent)

    def evaluate(self, runs: list[int], rounds: list[int]) -> tuple[list[dict], list[list[np.ndarray]]]:
        """The eval/ metrics and videos of each run in `runs`, in its evaluation round of `rounds`: episodes
        conditioned on its success target, and its return-alignment error over its sweep of targets."""
        results, videos = [], []
        for index, round_index in zip(runs, rounds, strict=True):
            metrics, frames = self.evaluate_run(index, round_index)
            results.append(metrics)
            videos.append(frames)
        return results, videos

    def evaluate_run(self, index: int, round_index: int) -> tuple[dict, list[np.ndarray]]:
        cfg, agent, env = self.run.cfg, self.agent_of(index), self.eval_envs[index]
        seed = self.run.members[index].seed
        key = jax.random.fold_in(jax.random.PRNGKey(seed), round_index)
        episodes = [
            rollout(
                act,
                agent,
                env,
                self.success_targets[index],
                episode_seed(seed, EpisodePurpose.EVAL, round_index * cfg.eval_episodes + episode),
                key,
                np.inf,
                render=episode < cfg.eval.video_episodes,
            )
            for episode in range(cfg.eval_episodes)
        ]
        errors = []
        repeats = agent.config.eval_episodes_per_target
        targets = self.targets[index]
        for target_index, target in enumerate(targets):
            for repeat in range(repeats):
                episode_index = (round_index * len(targets) + target_index) * repeats + repeat
                reset_seed = episode_seed(seed, EpisodePurpose.TARGET_SWEEP, episode_index)
                episode = rollout(act, agent, env, target, reset_seed, key, np.inf)
                errors.append(abs(episode["return"] - target))
        metrics = {
            "eval/success": float(np.mean([episode["success"] for episode in episodes])),
            "eval/episode_return": float(np.mean([episode["return"] for episode in episodes])),
            "eval/episode_length": float(np.mean([len(episode["rewards"]) for episode in episodes])),
            "eval/return_alignment_error": float(np.mean(errors)),
        }
        return metrics, [np.stack(episode["frames"]) for episode in episodes[: cfg.eval.video_episodes]]

    def online(self) -> OnlineSequences:
        self.run.agent = self.run.agent.replace(online=True)
        return OnlineSequences(self, self.run.vector_env("online"))

    def close(self) -> None:
        for env in self.eval_envs:
            env.close()


class OnlineSequences(OnlineRuns):
    """The host side of the online phase for sequence agents: each run's open episode (what its context
    windows are cut from), one environment step of every run at a time. A run's episode end is its only
    event point: its trajectory enters its replay and its owed updates run."""

    def __init__(self, kind: Sequences, vector_env):
        super().__init__(kind.run)
        self.kind, self.vector_env = kind, vector_env
        run = self.run
        self.act_keys = stack([jax.random.PRNGKey(member.seed + 2) for member in run.members])
        self.episodes = [
            {key: list(s.get(key, [])) for key in ("observations", "actions", "rewards")} for s in self.saved
        ]
        self.returns_to_go = [  # the target left before each step of the open episode
            self.returns_to_go_of(index, episode["rewards"]) for index, episode in enumerate(self.episodes)
        ]
        self.ended = [False] * run.num_runs  # whose episode ended at the last step (its event point)
        self.observations = reopen(run, vector_env, [e["actions"] for e in self.episodes], self.saved)

    def returns_to_go_of(self, index: int, rewards: list[float]) -> list[float]:
        """R_0 = the run's exploration target, R_{t+1} = min(R_t - r_t, 0), for an episode's steps so far."""
        returns_to_go = [self.kind.exploration_targets[index]]
        for reward in rewards:
            returns_to_go.append(min(returns_to_go[-1] - reward, 0.0))
        return returns_to_go

    def at_event_point(self, index: int) -> bool:
        return self.ended[index]

    def catch_up(self, due: list[bool]) -> None:
        """The owed updates of each run whose episode has just ended (all its owed updates)."""
        self.pay([owed if ended else 0 for owed, ended in zip(self.owed, self.ended, strict=True)])

    def open_episodes(self) -> list[dict]:
        """Each run's open episode, for a checkpoint (JSON): replayed from its reset seed on resume."""
        return [
            {**episode, "owed": owed, "observation": observation.tolist()}
            for episode, owed, observation in zip(self.episodes, self.owed, self.observations, strict=True)
        ]

    def windows(self) -> dict:
        """Every run's context window at its current step, stacked: leaves (runs, 1, K, ...); the action of
        this step is a zero placeholder (a_t is not seen when predicting a_t)."""
        context_length = self.run.agent.config.context_length
        windows = []
        for index, episode in enumerate(self.episodes):
            returns_to_go = self.returns_to_go[index]
            observations = [*episode["observations"], self.observations[index]]
            actions = [*episode["actions"], np.zeros(self.vector_env.single_action_space.shape, np.float32)]
            windows.append(context_window(observations, actions, returns_to_go, context_length))
        return {key: np.stack([window[key] for window in windows]) for key in windows[0]}

    def step(self) -> None:
        """One environment step of every run; a run whose episode ends (or is cut at the phase's end) puts
        its trajectory in its replay and starts its next episode."""
        run, cfg, counters = self.run, self.run.cfg, self.run.counters
        episodes = np.asarray([counters.episode for counters in counters.runs])
        steps = np.asarray([len(episode["rewards"]) for episode in self.episodes])
        keys = jax.vmap(jax.random.fold_in)(jax.vmap(jax.random.fold_in)(self.act_keys, episodes), steps)
        actions = np.asarray(explore_runs(run.agent, self.windows(), keys))[:, 0, 0]
        next_observations, rewards, terminated, truncated, infos = self.vector_env.step(actions)
        counters.env_step = step = counters.env_step + 1
        last = step == cfg.online_steps
        for index, episode in enumerate(self.episodes):
            episode["observations"].append(self.observations[index].tolist())
            episode["actions"].append(actions[index].tolist())
            episode["rewards"].append(float(rewards[index]))
            returns_to_go = self.returns_to_go[index]
            returns_to_go.append(min(returns_to_go[-1] - float(rewards[index]), 0.0))
            self.owed[index] += run.members[index].cfg.utd_ratio if step >= cfg.start_training else 0
        self.observations = np.asarray(next_observations, np.float32)
        done = np.asarray(terminated) | np.asarray(truncated)
        self.ended = [bool(d) or last for d in done]
        ended = [index for index, end in enumerate(self.ended) if end]
        if not ended:
            return
        padded = {
            index: trajectories.pad_trajectory(**self.episodes[index], max_length=self.kind.slot_length)
            for index in ended
        }
        # the runs whose episode goes on get a stand-in that `insert` leaves out (where=False)
        items = [padded.get(index, padded[ended[0]]) for index in range(run.num_runs)]
        run.replay = insert(run.replay, stack(items), np.asarray(self.ended))
        for index in ended:
            rewards_ = self.episodes[index]["rewards"]
            success = float(infos["success"][index])
            run.end_episode(index, float(sum(rewards_)), len(rewards_), success, bool(done[index]))
            self.episodes[index] = {"observations": [], "actions": [], "rewards": []}
            self.returns_to_go[index] = self.returns_to_go_of(index, [])
        restart = [index for index in ended if done[index] and not last]
        self.observations = envs.reset_runs(
            self.vector_env, self.observations, restart, [online_seed(run, index) for index in restart]
        )
