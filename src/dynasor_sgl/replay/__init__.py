"""Replaying recorded full-budget runs: the replay engine, labelled runs, calibration,
held-out folds."""

from dynasor_sgl import _moved

# `dynasor_sgl.replay` was the module now at `.engine`: its names still resolve, with a warning.
__getattr__ = _moved.forward(__name__, "dynasor_sgl.replay.engine")
