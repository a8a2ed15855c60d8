"""The benchmarks: `python -m bench.<name>` from the repository root (`make bench`)."""
