"""Veritas' machine-learning layer. Importing it does not import torch.

* ``drift`` / ``drift_methods``: drift statistics (Evidently) for the validation gate and the drift
  monitor.
"""
