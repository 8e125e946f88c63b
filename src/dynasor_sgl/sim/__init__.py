"""A discrete-event simulator of the serving system, for questions of scale.

SGLang workers are modelled (`engine`: continuous batching with a fitted step time, KV
capacity, prefix sharing, the waiting-queue policies, aborts; `profile`: the fitted numbers),
and the decisions are the project's own: the same `AdmissionQueue`, `Scheduler`,
`ProgramPolicy` and report step (`scheduling.reports`) the router runs, on a virtual clock.
Programs are replayed from recorded or synthetic traces (`traces`).
"""
