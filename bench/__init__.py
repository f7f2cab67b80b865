"""kubelite's benchmarks: `bench_engine` (plan, run_once), `bench_cli` (get pods) and `bench_runtime` (real pods).

`summary` prints the headline table of a run. Run them all with `bench/run`.
"""
