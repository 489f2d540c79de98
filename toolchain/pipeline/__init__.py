"""Orchestration: a recipe (or a user's model) through the cached stages to artifacts.

- run.py           `edgeopt run`: train, prune, export, then every target
- build_target.py  per target: quantize, convert, benchmark, choose, gate, package
- steps.py         each stage wrapped in the cache, with the modules it runs (StageSpec)
- cache.py         content-addressed stage cache; codehash.py the code fingerprints
- ship.py          which measured candidate ships; metrics.py the typed Metrics
- report.py        the run's text and JSON report
"""
