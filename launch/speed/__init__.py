"""What launch/benchmark.py measures with: timing, synthetic data, the shard-stream case."""
