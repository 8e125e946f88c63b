"""The Dynasor router: SGLang's native API in front of SGLang workers, plus programs.

`app` builds the HTTP server; `programs` holds the program table and enforces decisions;
`pool` the workers, their health and pinning; `admission` the per-worker queue and priorities;
`forward` talks to the workers; `metrics` exports Prometheus metrics.
"""
