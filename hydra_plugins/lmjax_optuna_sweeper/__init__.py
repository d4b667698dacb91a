"""lmjax's Hydra sweeper for Optuna searches (``hydra/sweeper=optuna``); see docs/search.md.

Hydra finds plugins in the ``hydra_plugins`` namespace package; this one ships with lmjax
(pyproject.toml's ``packages.find`` includes ``hydra_plugins*``).
"""
