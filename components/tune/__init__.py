"""Tuning: an Optuna study over a task's train config whose trials call the very same train step (samplers
TPE / CMA-ES / GP / NSGA-II / random / grid, median or Hyperband pruning, worker processes sharing one storage).

Imports: components.core, components.config, components.data, components.train.
"""
