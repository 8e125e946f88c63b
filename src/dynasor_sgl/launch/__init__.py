"""Starting SGLang workers and the router: launch config, worker processes, the model cache,
step traces."""
