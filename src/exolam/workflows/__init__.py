"""The own-data commands, one module each, from input folder to output folder: `exolam train`
(train_own.py), `label`, `diagnose` and its `encoder` / `target` variants, and `adapter.py` (any LAM
for diagnose). Layer: above train/, metrics/, models/ and data/, below the command line
(docs/design.md); they never import an experiment module."""
