"""The engine's side of agents that learn from chunk batches (every TD agent): their replay and agents, the
online host loop's carries (a chunk queue, or a closed-loop agent's own: launch/engine/acting.py), and
evaluation of every run in one vector of envs."""

from __future__ import annotations

import jax
import numpy as np

import agents
import envs
from launch.engine import acting
from launch.engine.chunk_data import Data, chunk_data
from launch.engine.episodes import OnlineRuns, online_seed, reopen
from launch.engine.evaluation import evaluate_runs
from launch.engine.fused import env_transitions, insert
from launch.engine.vector import stack


class Chunks:
    """Replay, agents, online carries and evaluation for a vector of runs of a TD agent."""

    def __init__(self, run):
        self.run = run

    def build(self) -> tuple[Data, object]:
        """The vector's replay and its runs' agents stacked on a leading run axis."""
        run = self.run
        data = chunk_data(run.cfg, run.members)
        agent = stack(
            [
                agents.make_agent(settings, member.seed, data.agent_obs, data.action_dim)
                for member, settings in zip(run.members, run.member_settings, strict=True)
            ]
        )
        if hasattr(agent, "transition_fields"):
            data.replay = data.replay.recording(agent.transition_fields())
        return data, agent

    def evaluate(self, runs: list[int], rounds: list[int]) -> tuple[list[dict], list[list[np.ndarray]]]:
        """Each run's eval/ metrics and videos over `eval_episodes` episodes in its round of `rounds`, all
        runs in one vector of envs (the runs of a TD agent share their event points: `runs` is every run).

        Each value of `eval.execution_lengths` and `eval.num_samples` evaluates the same agents again on the
        same episodes, logged as `eval/success@execution_length=2` and so on beside `eval/success`.
        """
        run, cfg = self.run, self.run.cfg
        assert runs == list(range(run.num_runs)), "a TD agent's runs evaluate together"

        def rollouts(agent, execution_length, video_episodes=0):
            return evaluate_runs(
                agent,
                run.vector_env("eval"),
                [member.seed for member in run.members],
                cfg.eval_episodes,
                rounds,
                execution_length,
                video_episodes,
            )

        results, videos = rollouts(run.agent, run.execution_length, cfg.eval.video_episodes)
        variants = [(f"execution_length={n}", run.agent, n) for n in cfg.eval.execution_lengths]
        for num_samples in cfg.eval.num_samples:
            agent = run.agent.replace(config=run.agent.config.replace_static(num_samples=num_samples))
            variants.append((f"num_samples={num_samples}", agent, run.execution_length))
        for suffix, agent, execution_length in variants:
            for run_metrics, extra in zip(results, rollouts(agent, execution_length)[0], strict=True):
                run_metrics.update({f"{key}@{suffix}": value for key, value in extra.items()})
        return results, videos

    def online(self) -> OnlineChunks:
        return OnlineChunks(self.run, self.run.vector_env("online"))

    def close(self) -> None:
        """Nothing of its own: the vector envs are the run's."""


class OnlineChunks(OnlineRuns):
    """The host side of the online phase: each run's env observation, carry, owed updates and open episode,
    stepped together, one environment step of every run at a time."""

    def __init__(self, run, vector_env):
        super().__init__(run)
        self.vector_env = vector_env
        cfg = run.cfg
        self.act_keys = stack([jax.random.PRNGKey(member.seed + 2) for member in run.members])
        self.returns = [s.get("return", 0.0) for s in self.saved]
        self.episode_actions = [s.get("actions", []) for s in self.saved]
        self.random_actions = cfg.random_action_steps
        self.observations = reopen(run, vector_env, self.episode_actions, self.saved)
        self.initial = acting.initial_carry(run.agent, self.observations[0], run.execution_length)
        self.carries = acting.stack_carries(
            [
                acting.carry_from_json(s["carry"], self.initial) if "carry" in s else self.initial
                for s in self.saved
            ]
        )

    def at_event_point(self, index: int) -> bool:
        """Any step is (a TD agent's run updates mid-chunk when an event is due)."""
        return True

    def catch_up(self, due: list[bool]) -> None:
        """The owed updates of each run whose decision (chunk or skill) is done or that has an event due, in
        one dispatch; the other runs wait for the end of their decision, as they would alone."""
        deciding = self.carries["steps_left"] == 0
        self.pay(
            [
                owed if (event or done) else 0
                for owed, done, event in zip(self.owed, deciding, due, strict=True)
            ]
        )

    def open_episodes(self) -> list[dict]:
        """Each run's open episode, for a checkpoint (JSON)."""
        return [
            {
                "carry": acting.carry_to_json(acting.carry_of(self.carries, index)),
                "owed": self.owed[index],
                "return": self.returns[index],
                "actions": self.episode_actions[index],
                "observation": self.observations[index].tolist(),
            }
            for index in range(self.run.num_runs)
        ]

    def act(self, step: int) -> tuple[np.ndarray, dict]:
        """Every run's action (runs, action_dim) and the fields its agent records beside it, from one jitted
        call; before `random_action_steps`, uniform random actions (the carries wait untouched), with zeros
        recorded beside them."""
        if step < self.random_actions:
            shape = self.vector_env.single_action_space.shape
            actions = np.stack(
                [
                    np.random.default_rng([member.seed, step]).uniform(-1, 1, shape)
                    for member in self.run.members
                ]
            ).astype(np.float32)
            online = self.run.replay.online
            return actions, {
                name: np.zeros(value.shape[:1] + value.shape[2:]) for name, value in online.fields.items()
            }
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(self.act_keys, step)
        actions, self.carries, fields = jax.device_get(
            acting.act_runs(self.run.agent, self.observations, self.carries, keys)
        )
        return np.asarray(actions, np.float32), fields

    def step(self) -> None:
        """One environment step of every run: its transition to its replay, its owed updates counted."""
        run, cfg, counters = self.run, self.run.cfg, self.run.counters
        step = counters.env_step
        actions, fields = self.act(step)
        next_observations, rewards, terminated, truncated, infos = self.vector_env.step(actions)
        run.replay = insert(
            run.replay,
            env_transitions(
                self.observations, actions, rewards, terminated, truncated, next_observations, fields
            ),
        )
        counters.env_step = step = step + 1
        self.observations = envs.observation_array(next_observations)
        ended = []
        for index in range(run.num_runs):
            self.owed[index] += run.members[index].cfg.utd_ratio if step >= cfg.start_training else 0
            self.returns[index] += float(rewards[index])
            self.episode_actions[index].append(actions[index].tolist())
            if terminated[index] or truncated[index]:
                success = float(infos["success"][index])
                run.end_episode(index, self.returns[index], len(self.episode_actions[index]), success)
                self.returns[index], self.episode_actions[index] = 0.0, []
                self.carries = acting.set_carry(self.carries, index, self.initial)
                ended.append(index)
        self.observations = envs.reset_runs(
            self.vector_env, self.observations, ended, [online_seed(run, index) for index in ended]
        )
