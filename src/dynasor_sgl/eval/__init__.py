"""Batch evaluation: a reasoning program over a dataset, policies compared, nothing lost.

`datasets` (JSONL, Hugging Face, built-in tasks), `results` (the resumable JSONL file),
`replay` (self-consistency policies replayed over a full-budget run), `runner` (questions in
parallel against the router), `report` (summary, CIs, curves, Markdown), `plots` (PNGs),
`session` (one `dynasor-sgl eval` run end to end).
"""
