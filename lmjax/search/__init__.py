"""Hyperparameter search with Optuna behind Hydra's ``-m``: see docs/search.md.

* :mod:`lmjax.search.space`: Hydra sweep overrides (``choice``, ``range``, ``interval``,
  ``tag(log, ...)``) -> Optuna distributions, and a trial's values -> job overrides.
* :mod:`lmjax.search.study`: the settings (``hydra.sweeper.*``), Optuna's samplers and pruners,
  the study in its database (SQLite in the sweep dir by default), progress counting and the
  heartbeat that lets a rerun find trials left running by a killed search.
* :mod:`lmjax.search.trial`: the job side: one trial's training run reports its metric after
  every epoch, is pruned when Optuna says so, and tells the study how it ended.

The Hydra plugin that drives a search is ``hydra_plugins/lmjax_optuna_sweeper``.
"""
