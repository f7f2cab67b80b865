"""kubelite's benchmarks: `bench_engine` (plan, run_once) and `bench_cli` (get pods). Run them with `bench/run`."""
