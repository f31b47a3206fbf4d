"""Training recipes, one module per trainer (`sft.py`, ...): each defines `RECIPE`, the record
that `training/registry.py` collects (its spec, its run function, its batching and presets).
A recipe module must import no torch: its run function imports the heavy parts when it runs."""
