"""The config schema: frozen dataclasses, validated on construction.

Hydra composes YAML from ``conf/`` on top of this schema (registered in the ConfigStore as
``base_config``), so a misspelled key or a wrong type fails at compose time. The entry point turns
the composed DictConfig into these dataclasses with :func:`from_dictconfig`; the library only ever
sees the typed objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

from lmjax.errors import ConfigError

FRAMING_NAMES = ("one_word", "line_by_line", "n_words", "char", "sequence")
LEVELS = ("word", "char")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "plateau")
TOKENIZERS = ("keras", "whitespace")
VOCAB_FROM = ("train", "all")
SPLITS = ("position", "none")
SHARD_MODES = ("auto", "devices", "none")
LOGGERS = ("wandb", "tensorboard")  # trackers besides metrics.jsonl (logger=none: neither)
LOGGER_MODES = ("auto", "online", "offline", "disabled")


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(name: str, value: float) -> None:
    _require(value > 0, f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class DataConfig:
    name: str = "jack_and_jill"  # a built-in, a registry name, "file" (set path) or "files"
    path: Optional[str] = None  # with name=file: any UTF-8 text file
    # with name=files: one UTF-8 file per split (valid and test optional; no valid: validation
    # on the training text, as with split=none)
    train: Optional[str] = None
    valid: Optional[str] = None
    test: Optional[str] = None
    # word tokens: keras (punctuation stripped, split on whitespace) or whitespace (split on
    # whitespace only; case and punctuation kept, an "<unk>" in the text is the unknown token)
    tokenizer: str = "keras"
    eos: bool = False  # word level: an end-of-line token "<eos>" after every line
    vocab: str = "train"  # vocabulary from the training text (train) or from every split (all)
    data_dir: Optional[str] = None  # where registry corpora live; else $LMJAX_DATA_DIR, else cache
    lowercase: bool = True
    split: str = "position"  # position: contiguous train|valid|test blocks; none: train = eval
    valid_frac: float = 0.05
    test_frac: float = 0.10
    # who reads what: devices = each process reads only its devices' shards of the text
    # (docs/distributed.md); none = every process reads it all; auto = devices in a job of
    # several processes whose mesh spans them all (train.devices=auto) without
    # train.parallel_seeds, else none
    shard: str = "auto"

    def __post_init__(self) -> None:
        _require(self.split in SPLITS, f"data.split must be one of {SPLITS}, got {self.split!r}")
        _require(self.shard in SHARD_MODES,
                 f"data.shard must be one of {', '.join(SHARD_MODES)}, got {self.shard!r}")
        _require(0.0 <= self.valid_frac < 1 and 0.0 <= self.test_frac < 1,
                 "data.valid_frac and data.test_frac must be in [0, 1)")
        _require(self.valid_frac + self.test_frac < 0.9,
                 f"data.valid_frac + data.test_frac must leave text to train on "
                 f"(got {self.valid_frac} + {self.test_frac})")
        if self.name == "file":
            _require(bool(self.path), "data=file needs a path: add data.path=/path/to/text.txt")
        if self.name == "files":
            _require(bool(self.train), "data=files needs a training file: add "
                     "data.train=/path/to/train.txt (data.valid, data.test optional)")
        else:
            _require(not (self.train or self.valid or self.test),
                     "data.train, data.valid and data.test need data=files")
        _require(self.tokenizer in TOKENIZERS,
                 f"data.tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        _require(self.vocab in VOCAB_FROM,
                 f"data.vocab must be one of {', '.join(VOCAB_FROM)}, got {self.vocab!r}")

    @property
    def valid_is_train(self) -> bool:
        """Validation on the training text: split=none, or data=files without data.valid."""
        return self.valid is None if self.name == "files" else self.split == "none"


@dataclass(frozen=True)
class FramingConfig:
    name: str = "line_by_line"  # one of FRAMING_NAMES (two_word/three_word are n_words presets)
    level: str = "word"  # word | char (char framing is always char)
    n_words: int = 1  # n_words framing: tokens in, one out
    seq_len: int = 40  # char and sequence framings: window length
    step: int = 3  # char framing: stride between windows; sequence: 0 means seq_len
    cross_lines: bool = True  # may a window span a line break?
    # sequence framing: row b of each batch continues row b of the previous batch (B streams of
    # consecutive blocks), and the LSTM state is carried from one step to the next
    carry_state: bool = False

    def __post_init__(self) -> None:
        _require(self.name in FRAMING_NAMES,
                 f"unknown framing {self.name!r}; choose one of {', '.join(FRAMING_NAMES)} "
                 f"(or the presets two_word, three_word)")
        _require(self.level in LEVELS, f"framing.level must be word or char, got {self.level!r}")
        _require(not (self.name == "char" and self.level != "char"),
                 "framing=char works at char level: set framing.level=char")
        _require(not (self.name in ("one_word", "line_by_line", "n_words") and self.level != "word"),
                 f"framing={self.name} is a word framing: set framing.level=word")
        _positive("framing.n_words", self.n_words)
        _positive("framing.seq_len", self.seq_len)
        _require(self.step >= 0, f"framing.step must be >= 0, got {self.step}")
        _require(not (self.name == "char" and self.step == 0), "framing.step must be > 0 for char")
        _require(not self.carry_state or (self.name == "sequence" and self.step in (0, self.seq_len)
                                          and self.cross_lines),
                 "framing.carry_state needs framing=sequence with consecutive blocks "
                 "(framing.step=0, framing.cross_lines=true)")

    @property
    def label(self) -> str:
        """A readable framing name: n_words with n = 2 is "two_word", and so on."""
        if self.name == "n_words":
            return {1: "one_word", 2: "two_word", 3: "three_word"}.get(self.n_words,
                                                                       f"{self.n_words}_words")
        return self.name

    @property
    def token_level(self) -> str:
        return "char" if self.name == "char" else self.level

    @property
    def last_only(self) -> bool:
        """True for many-to-one framings: only the last position carries a target."""
        return self.name != "sequence"


@dataclass(frozen=True)
class ModelConfig:
    embed_size: int = 10  # 0: one-hot inputs (the keyboard tutorial), no embedding table
    hidden_size: int = 50
    num_layers: int = 1
    dropout: float = 0.0  # on the LSTM outputs, between layers and before the output layer
    tie_embeddings: bool = False  # output layer = embedding^T (needs embed_size == hidden_size)
    # regularization (docs/regularization.md), training only:
    locked_dropout: float = 0.0  # as dropout, one mask per sequence for all time steps
    embed_dropout: float = 0.0  # locked dropout on the embedded inputs
    embed_word_dropout: float = 0.0  # drops whole words (rows) of the embedding table
    weight_drop: float = 0.0  # DropConnect on the recurrent weights, one mask per batch
    input_dropout: float = 0.0  # as dropout (a fresh mask at every position) on the embedded inputs
    # keras: Keras' initialisers (the tutorials'); torch: PyTorch's word_language_model's
    # (embedding and output weights U(-0.1, 0.1), LSTM U(-1/sqrt(H), 1/sqrt(H)))
    init: str = "keras"
    # a continuous cache over the last cache_window positions when a stream is scored (0: off;
    # lmjax/train/cache.py, docs/metrics.md): end-of-run test_cache_*, experiments.score
    cache_window: int = 0
    cache_theta: float = 0.6
    cache_lambda: float = 0.2

    def __post_init__(self) -> None:
        _require(self.cache_window >= 0,
                 f"model.cache_window must be >= 0 (0 turns the cache off), got {self.cache_window}")
        _require(self.cache_theta > 0, f"model.cache_theta must be > 0, got {self.cache_theta}")
        _require(0.0 <= self.cache_lambda <= 1.0,
                 f"model.cache_lambda must be in [0, 1], got {self.cache_lambda}")
        _require(self.embed_size >= 0, f"model.embed_size must be >= 0, got {self.embed_size}")
        _positive("model.hidden_size", self.hidden_size)
        _positive("model.num_layers", self.num_layers)
        for name in _RATES:
            rate = getattr(self, name)
            _require(0.0 <= rate < 1.0, f"model.{name} must be in [0, 1), got {rate}")
        _require(not self.tie_embeddings or self.embed_size == self.hidden_size,
                 "model.tie_embeddings needs model.embed_size == model.hidden_size "
                 f"(got {self.embed_size} and {self.hidden_size})")
        _require(not (self.dropout and self.locked_dropout),
                 "model.dropout and model.locked_dropout drop the same layer outputs: "
                 "set one of them to 0")
        _require(not (self.input_dropout and self.embed_dropout),
                 "model.input_dropout and model.embed_dropout drop the same embedded inputs: "
                 "set one of them to 0")
        _require(self.init in ("keras", "torch"),
                 f"model.init must be keras or torch, got {self.init!r}")
        _require(self.embed_size > 0 or not (self.embed_dropout or self.embed_word_dropout
                                             or self.input_dropout),
                 "model.embed_dropout, model.embed_word_dropout and model.input_dropout need "
                 "an embedding table: "
                 "set model.embed_size > 0 (0 means one-hot inputs)")

    @property
    def stochastic(self) -> bool:
        """Does training need a dropout key (any dropout rate above 0)?"""
        return any(getattr(self, name) > 0 for name in _RATES)


_RATES = ("dropout", "locked_dropout", "embed_dropout", "embed_word_dropout", "weight_drop",
          "input_dropout")


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # adam | rmsprop | sgd
    lr: float = 1e-3
    clip_norm: float = 5.0  # clip_by_global_norm; 0 turns clipping off
    eps: float = 1e-7  # Keras' default for adam and rmsprop
    momentum: float = 0.0  # sgd only
    rho: float = 0.9  # rmsprop decay (Keras' rho)
    # learning-rate schedule: constant, or cosine / linear decay from lr to lr * final_lr_frac
    # over decay_steps optimizer steps (then held there; "auto": the whole run, epochs x steps
    # per epoch), or plateau: lr times plateau_factor after each epoch whose validation loss is
    # not lower than the best so far
    schedule: str = "constant"
    decay_steps: Union[int, str] = 0
    final_lr_frac: float = 0.0
    plateau_factor: float = 0.25

    def __post_init__(self) -> None:
        _require(self.name in OPTIMIZERS,
                 f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}")
        _positive("optim.lr", self.lr)
        _require(self.schedule in SCHEDULES,
                 f"unknown optim.schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        auto = self.decay_steps == "auto"
        _require(auto or (isinstance(self.decay_steps, int) and self.decay_steps >= 0),
                 f"optim.decay_steps must be a number >= 0 or auto, got {self.decay_steps!r}")
        _require(self.schedule not in ("cosine", "linear") or auto or self.decay_steps > 0,
                 f"optim.schedule={self.schedule} needs optim.decay_steps > 0 (or auto: the "
                 f"whole run)")
        _require(0.0 < self.plateau_factor <= 1.0,
                 f"optim.plateau_factor must be in (0, 1], got {self.plateau_factor}")
        _require(0.0 <= self.final_lr_frac <= 1.0,
                 f"optim.final_lr_frac must be in [0, 1], got {self.final_lr_frac}")
        _require(self.clip_norm >= 0, f"optim.clip_norm must be >= 0, got {self.clip_norm}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 500
    batch_size: int = 32
    eval_batch_size: int = 512
    eval_max_train_samples: int = 20000  # train metrics on a fixed subset this large (0 = all)
    # what each epoch's end evaluates: all (train_* on the subset above, val_* on the validation
    # blocks, and val_carried_* with framing.carry_state) or carried (val_carried_* alone, the one
    # validation PyTorch's word_language_model computes; docs/metrics.md)
    epoch_eval: str = "all"
    # end-of-run test metrics: score at most this many test tokens (0 = the whole test text)
    test_max_tokens: int = 0
    time_budget_s: float = 0.0  # training time limit: stops before a chunk would cross it (0: none)
    steps_per_call: int = 0  # train steps per jitted call (0 = automatic: see chunk_seconds)
    # automatic steps_per_call: the loop checks for a stop, checkpoint or the time budget at
    # least this often (each jitted call gets about half of it: one runs, one waits queued)
    chunk_seconds: float = 2.0
    log_every_s: float = 10.0  # a plain progress line (logging; run.log) this often (0 = off)
    checkpoint_every: int = 0  # epochs between checkpoints (0 = off; the end always saves)
    checkpoint_every_steps: int = 0  # optimizer steps between checkpoints, mid-epoch too (0 = off)
    checkpoint_every_s: float = 60.0  # seconds between checkpoints, mid-epoch too (0 = off)
    keep_checkpoints: int = 3  # the latest N are kept, plus the best by validation loss
    parallel_seeds: int = 1  # K > 1: seeds seed..seed+K-1 trained together (vmap), one dir
    # each; with train.devices > 1 the seeds are split over the devices
    devices: str = "1"  # data parallel over "auto" (all devices) or the first N devices
    progress: bool = True

    def __post_init__(self) -> None:
        _positive("train.epochs", self.epochs)
        _positive("train.batch_size", self.batch_size)
        _positive("train.eval_batch_size", self.eval_batch_size)
        _require(self.eval_max_train_samples >= 0, "train.eval_max_train_samples must be >= 0")
        _require(self.epoch_eval in ("all", "carried"),
                 f"train.epoch_eval must be all or carried, got {self.epoch_eval!r}")
        _require(self.test_max_tokens >= 0, "train.test_max_tokens must be >= 0")
        _require(self.time_budget_s >= 0, "train.time_budget_s must be >= 0")
        _require(self.steps_per_call >= 0, "train.steps_per_call must be >= 0")
        _positive("train.chunk_seconds", self.chunk_seconds)
        _require(self.log_every_s >= 0, "train.log_every_s must be >= 0")
        _require(self.checkpoint_every >= 0, "train.checkpoint_every must be >= 0")
        _require(self.checkpoint_every_steps >= 0, "train.checkpoint_every_steps must be >= 0")
        _require(self.checkpoint_every_s >= 0, "train.checkpoint_every_s must be >= 0")
        _positive("train.keep_checkpoints", self.keep_checkpoints)
        _positive("train.parallel_seeds", self.parallel_seeds)
        _require(not (self.parallel_seeds > 1 and self.time_budget_s),
                 "train.parallel_seeds trains a fixed number of epochs: drop train.time_budget_s")
        _require(self.devices == "auto" or (self.devices.isdigit() and int(self.devices) > 0),
                 f"train.devices must be 'auto' or a positive number, got {self.devices!r}")


@dataclass(frozen=True)
class SampleConfig:
    prompts: List[str] = field(default_factory=lambda: ["jack", "jill"])
    length: int = 6  # tokens generated after each prompt
    # keyboard demo: 5 completions of each text's first 40 chars -> completions.json (see
    # docs/keyboard.md); empty: none
    complete: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(self.length >= 0, f"sample.length must be >= 0, got {self.length}")


@dataclass(frozen=True)
class LoggerConfig:
    # Trackers besides metrics.jsonl (always written): conf/logger/<name>.yaml turns its one on,
    # logger=[wandb,tensorboard] selects several, logger=none neither (see docs/dashboard.md).
    # ``name`` is the older single-choice spelling (wandb | tensorboard | none, or several joined
    # by "+"), still read from old run dirs' config.yaml; when set it alone picks the trackers.
    name: Optional[str] = None
    wandb: bool = False
    tensorboard: bool = False
    mode: str = "auto"  # W&B: auto = online with an API key, else offline
    project: str = "lmjax"  # W&B project, entity, group (a sweep: the sweep dir's name) and tags
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.name is not None:
            parts = self.name.split("+")
            _require(self.name == "none" or all(p in LOGGERS for p in parts),
                     f"logger must be none or any of {', '.join(LOGGERS)}, got {self.name!r}")
            for tracker in LOGGERS:
                object.__setattr__(self, tracker, tracker in parts)
        _require(self.mode in LOGGER_MODES,
                 f"logger.mode must be one of {LOGGER_MODES}, got {self.mode!r}")

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers this config turns on, e.g. ("wandb", "tensorboard")."""
        return tuple(t for t in LOGGERS if getattr(self, t))


@dataclass(frozen=True)
class Config:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    framing: FramingConfig = field(default_factory=FramingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    resume: bool = False  # continue the run in the run dir from its latest checkpoint
    overwrite: bool = False  # replace a run dir that holds a run with a different config

    def __post_init__(self) -> None:
        _require(not (self.resume and self.overwrite),
                 "resume=true and overwrite=true contradict each other; choose one")
        _require(not (self.optim.schedule == "plateau" and self.train.parallel_seeds > 1),
                 "optim.schedule=plateau follows one run's validation loss: drop "
                 "train.parallel_seeds (or use a sweep over seeds)")
        _require(self.train.epoch_eval == "all" or (self.framing.carry_state
                                                    and self.train.parallel_seeds == 1),
                 "train.epoch_eval=carried evaluates the carried validation alone: it needs "
                 "framing.carry_state=true and train.parallel_seeds=1 (or train.epoch_eval=all)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that shapes training (not logging, progress or checkpoints)."""
        return _hash(self.to_dict(), _NOT_TRAINING, ("logger.",))

    def resume_fingerprint(self) -> str:
        """A hash of what must not change when a run is resumed: its fingerprint without
        ``name``, ``train.epochs`` and ``train.time_budget_s`` (those may grow) or samples."""
        return _hash(self.to_dict(), RESUME_FREE_KEYS, RESUME_FREE_PREFIXES)


# Keys that do not change the training trajectory (flattened, dotted).
_NOT_TRAINING = frozenset({
    "resume", "overwrite", "train.progress", "train.checkpoint_every",
    "train.checkpoint_every_steps", "train.checkpoint_every_s", "train.keep_checkpoints",
    "train.devices",  # data parallel gives the same updates (to float rounding) on any count
    "train.chunk_seconds", "train.log_every_s",  # how training is cut into calls; logging
    "train.test_max_tokens",  # end-of-run scoring only
    "train.epoch_eval",  # what is evaluated, not how it trains (the schedule follows the
    # carried validation either way: epoch_eval=carried needs it)
    "model.cache_window", "model.cache_theta", "model.cache_lambda",  # stream scoring only
})
# Keys a resumed run may change: the above, plus how long to train, the name, the samples,
# logging and where corpora live (checkpoints record the corpus text's sha256 instead).
RESUME_FREE_KEYS = _NOT_TRAINING | {"name", "train.epochs", "train.time_budget_s",
                                    "data.data_dir", "data.path", "data.train", "data.valid",
                                    "data.test"}
RESUME_FREE_PREFIXES = ("logger.", "sample.")


def resume_relevant(d: dict[str, Any]) -> dict[str, Any]:
    """The flattened entries of a config dict that a resumed run must keep unchanged (a key
    added since the run was written counts as unchanged while it holds its default)."""
    return {k: v for k, v in flat_dict(d).items()
            if k not in RESUME_FREE_KEYS and not k.startswith(RESUME_FREE_PREFIXES)
            and not (k in _HASHED_UNLESS and v == _HASHED_UNLESS[k])}


def flat_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


# Keys left out of the hashes while they hold these values (keys added later than the first
# checkpoints: a run written before them keeps its hash and can still be resumed).
_HASHED_UNLESS = {"data.shard": "auto", "framing.carry_state": False, "data.train": None,
                  "data.valid": None, "data.test": None, "data.tokenizer": "keras",
                  "data.eos": False, "data.vocab": "train", "optim.plateau_factor": 0.25,
                  "model.locked_dropout": 0.0, "model.embed_dropout": 0.0,
                  "model.embed_word_dropout": 0.0, "model.weight_drop": 0.0,
                  "model.input_dropout": 0.0, "model.init": "keras"}


def _hash(d: dict[str, Any], drop: frozenset[str], prefixes: tuple[str, ...]) -> str:
    flat = {k: v for k, v in flat_dict(d).items() if k not in drop and not k.startswith(prefixes)
            and not (k in _HASHED_UNLESS and v == _HASHED_UNLESS[k])}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def from_dict(d: dict[str, Any]) -> Config:
    """Build a Config from a plain dict (e.g. a run dir's config.yaml); unknown keys fail."""
    sections = {
        "data": DataConfig, "framing": FramingConfig, "model": ModelConfig, "optim": OptimConfig,
        "train": TrainConfig, "sample": SampleConfig, "logger": LoggerConfig,
    }
    from lmjax.config_errors import unknown_key_message

    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key in sections:
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(sections[key])}
                             if isinstance(value, dict) else ())
            if unknown:
                raise ConfigError(unknown_key_message(f"{key}.{unknown[0]}"))
            try:
                kwargs[key] = sections[key](**value)
            except TypeError as e:
                raise ConfigError(f"bad config section {key!r}: {e}") from None
        elif key in ("name", "seed", "resume", "overwrite"):
            kwargs[key] = value
        else:
            raise ConfigError(unknown_key_message(next(iter(flat_dict({key: value})), key)))
    return Config(**kwargs)


def from_dictconfig(cfg: Any) -> Config:
    """Hydra's composed DictConfig -> typed Config (validation runs in __post_init__)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        if "Missing mandatory value" in msg and "data.path" in str(e):
            msg = "data=file needs a path: add data.path=/path/to/text.txt"
        raise ConfigError(msg) from None
    container.pop("hydra", None)
    return from_dict(container)


def _schema(cls: type) -> type:
    """A mutable twin of a frozen config dataclass, for Hydra to merge YAML into.

    OmegaConf marks structured configs made from frozen dataclasses read-only, so group files
    could not be merged on top. The twin has the same fields, types and defaults (no
    ``__post_init__``); the frozen classes above still validate when the result is built.
    """
    fields = []
    for f in dataclasses.fields(cls):
        ftype = f.type if not isinstance(f.type, str) else eval_type(f.type)
        if dataclasses.is_dataclass(ftype):
            sub = _schema(ftype)
            fields.append((f.name, sub, field(default_factory=sub)))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, ftype, field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, ftype, field(default=f.default)))
    return dataclasses.make_dataclass(cls.__name__ + "Schema", fields)


def eval_type(name: str) -> Any:
    """Resolve a postponed annotation string of this module (``from __future__ annotations``)."""
    import typing

    namespace = {**globals(), **vars(typing)}
    return typing._eval_type(typing.ForwardRef(name), namespace, namespace)  # noqa: SLF001


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (``defaults: [base_config, ...]``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=_schema(Config))
