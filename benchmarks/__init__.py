"""Benchmarks of the hot path (offline) and of the inline driver in the network-namespace lab.

`python -m benchmarks.run` (what `make bench` calls) runs both and writes benchmarks/results/*.json and
benchmarks/results/bench.png. See benchmarks/README.md for what each number means.
"""
