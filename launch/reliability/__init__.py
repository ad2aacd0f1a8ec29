"""What keeps a run alive (docs/reliability.md): checkpoints and resume (checkpoints.py), one writer per run
dir (lock.py), the error for a failed write (disk.py), the one metrics writer (logger.py: metrics.jsonl and
W&B) and the format and reader of metrics.jsonl (metrics.py). The signal record is the top-level
`preemption` package, below both this room and envs/ (dataset generation stops at a signal too).
"""
