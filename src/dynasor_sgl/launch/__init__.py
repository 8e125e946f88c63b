"""Starting SGLang workers and the router: launch config, worker processes, the model cache,
step traces."""

from dynasor_sgl import _moved

# `dynasor_sgl.launch` was the module now at `.cluster`: its names still resolve, with a warning.
__getattr__ = _moved.forward(__name__, "dynasor_sgl.launch.cluster")
