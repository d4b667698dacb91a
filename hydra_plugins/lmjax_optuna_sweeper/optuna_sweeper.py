"""A thin Hydra sweeper on Optuna's ask/tell API; the search itself is lmjax.search.driver.

Hydra's own Optuna sweeper (hydra-optuna-sweeper 1.2.0) requires ``optuna<3.0.0``, which cannot
be installed next to a current Optuna; this plugin keeps Hydra's sweep syntax and launchers and
uses the installed Optuna (docs/search.md).
"""

# (no "from __future__ import annotations": Hydra loads plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations)
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class OptunaSweeperConf:
    """The schema of ``hydra.sweeper`` (conf/hydra/sweeper/optuna.yaml gives the defaults)."""

    _target_: str = "hydra_plugins.lmjax_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    n_trials: int = 20
    n_jobs: int = 1
    metric: str = "val_loss"
    direction: str = "minimize"
    sampler: str = "tpe"
    seed: Optional[int] = None
    pruner: str = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 1
    report_every_epochs: int = 1
    storage: Optional[str] = None
    study_name: str = "search"
    heartbeat_s: int = 10
    grace_s: int = 30
    max_retry: int = 1
    params: Dict[str, Any] = field(default_factory=dict)
    trial: Optional[int] = None


ConfigStore.instance().store(group="hydra/sweeper", name="lmjax_optuna", node=OptunaSweeperConf,
                             provider="lmjax")


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from lmjax.cli import error_exit
        from lmjax.errors import LmjaxError

        assert self.config is not None
        try:
            return self._search(arguments)
        except LmjaxError as e:
            error_exit(str(e), getattr(e, "exit_code", 2))

    def _search(self, arguments: List[str]) -> Any:
        from lmjax.search.driver import Search
        from lmjax.search.study import SearchSettings

        assert self.config is not None
        settings = SearchSettings.from_hydra(OmegaConf.create(self.settings))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        search = Search(settings, sweep_dir, launch=self.launcher.launch,
                        validate=self._validate)
        return search.run(list(arguments))

    def _validate(self, batch: List[List[str]]) -> None:
        from hydra.errors import HydraException

        from lmjax.errors import ConfigError

        try:
            self.validate_batch_is_legal(batch)
        except (HydraException, ValueError) as e:  # an unknown key or group value
            text = str(e)
            m = re.search(r"Could not override '([^']+)'", text)
            msg = (f"{m.group(1)} is not a config key (python -m experiments.run --cfg job "
                   f"shows them)" if m else (text.splitlines() or [type(e).__name__])[0])
            raise ConfigError(f"the search space does not fit the config: {msg}") from None
