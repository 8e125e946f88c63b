"""The online serving benchmark (`dynasor-sgl bench online`): Poisson arrivals of reasoning
programs, each with a deadline, served by SGLang alone and by the router's scheduling modes on
the same trace and workers; the highest rate at which 90% of programs meet their deadline.

`workload` (arrivals, difficulty, deadlines), `systems` (the compared systems), `servers`
(their worker and router processes), `runner` (the open loop), `results` (the resumable
results file), `metrics` and `report` (pure numbers and the summary), `plots`, `config`
(`BenchConfig`) and `session` (one benchmark end to end).
"""
