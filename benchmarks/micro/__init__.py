"""Per-stage micro-benchmarks (pytest-benchmark); see ``benchmarks/README.md``."""
