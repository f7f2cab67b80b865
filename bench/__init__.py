"""kubelite's benchmarks: `bench_engine` (plan, run_once), `bench_cli` (get pods), `bench_runtime` (real pods)
and `bench_gitops` (commit pushed -> pod running).

`summary` prints the headline table of a run. Run them all with `bench/run`.
"""
