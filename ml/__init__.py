"""Veritas' machine-learning adapter layer: the pure, library-level code the training saga's step
workers call.

It imports nothing from the rest of the project; every function takes explicit parameters (paths,
seeds, key bytes). Importing this package does not import torch. Only the modules that run a model
import it (``ml.model``, ``ml.train``, ``ml.measure``, ``ml.validate``; ``ml.job`` loads them), and a long-lived process runs
them in a child process through ``ml.child.run_job``.

Modules:

* ``datasets``: load a table from ``sklearn:<name>`` or ``file:///...csv|parquet``; its digest.
* ``prepare``: stratified split, standardisation statistics, reference profile; snapshots on disk.
* ``model`` / ``numpy_forward``: the torch MLP, and the same forward pass in numpy.
* ``train`` / ``validate`` / ``measure``: seeded training to a safetensors artifact; seed 004's
  quality gates and the latency and memory measurements behind them.
* ``scan``: the artifact's security scan (safetensors header parsed independently).
* ``job`` / ``child``: ``python -m ml.job`` and the parent-side runner with timeouts.
* ``semver``, ``store``, ``signing``, ``card``, ``environment``: versioning, the content-addressed
  store, Ed25519 signatures, the model card and the lineage's environment.
* ``drift`` / ``drift_methods``: Evidently data drift with a test chosen per column kind (no torch:
  the drift monitor's process imports it).
"""
