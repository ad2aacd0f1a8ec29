"""The launchers (configs/launcher/): each composes with the keys its docs name."""

from hydra import compose, initialize_config_dir

from tests.helpers import CONFIGS


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_basic_launcher_is_the_default():
    cfg = compose_hydra()
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "basic"
    assert cfg.resume is False


def test_local_launcher_runs_jobs_in_parallel_processes():
    cfg = compose_hydra("launcher=local", "hydra.launcher.n_jobs=3")
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "joblib"
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 3


def test_slurm_launcher_composes_with_the_documented_keys():
    cfg = compose_hydra("launcher=slurm", "hydra.launcher.partition=gpu")
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_slurm"
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu"
    assert (launcher.gpus_per_node, launcher.cpus_per_task, launcher.mem_gb) == (1, 8, 32)
    assert (launcher.timeout_min, launcher.max_num_timeout, launcher.array_parallelism) == (1440, 3, 64)
    assert launcher.account is None and list(launcher.setup) == []
    assert cfg.resume is True  # a requeued job continues from its checkpoint
