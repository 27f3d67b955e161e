"""Training: `engine` (the one loop for image LAMs, on Lightning Fabric), `checkpoint` (folders that
rebuild a model alone), `sweep` (resumable, sharded sweeps) and `linear` (closed-form-gradient
ensembles of linear LAMs)."""
