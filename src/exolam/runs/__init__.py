"""Runs on disk: files whole or absent (`files.py`), every command's --out (`outdir.py`), an experiment's
run folder and its rows (`rundir.py`), the sweep runner that fills it (`sweep.py`: resume, --jobs,
--shard), and which rank of a multi-process launch may write (`launch.py`). The bottom layer beside
errors.py: data/ and everything above may use it (docs/design.md)."""
