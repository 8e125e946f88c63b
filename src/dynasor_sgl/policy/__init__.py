"""The program policy: certaindex signals, the stop/trim/expand machine, its config and presets."""

from dynasor_sgl import _moved

# `dynasor_sgl.policy` was the module now at `.machine`: its names still resolve, with a warning.
__getattr__ = _moved.forward(__name__, "dynasor_sgl.policy.machine")
