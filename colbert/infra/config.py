"""ColBERTConfig and RunConfig: one flat, documented dataclass each.

Merge rules (the reference's precedence, applied by the facades only):

| source, lowest first                 | read by                         |
|--------------------------------------|---------------------------------|
| field defaults below                 | everything                      |
| checkpoint `artifact.metadata`       | Checkpoint, Indexer, Searcher   |
| index `metadata.json` (or plan.json) | Searcher, IndexUpdater          |
| `config=` passed to a facade         | every facade                    |
| `Run().context(RunConfig(...))`      | every facade                    |

Where files go follows the reference exactly: `root`, `experiment`, `index_root` and `name` always come from
`Run()` (its context, else RunConfig's defaults); the same fields in `config=` are ignored by Indexer, Searcher and
Trainer, with a warning when they differ (`colbert.infra.run.LOCATION_FIELDS`, docs/compat.md). `index_path` in
`config=` is honoured.

A field counts as *assigned* when it was passed to the constructor (with a value other than None) or set through
`configure()`; only assigned fields override lower sources in `ColBERTConfig.from_existing(*sources)`. Configs read
from JSON have every field they contain assigned.

Differences from the reference, on purpose: an unknown keyword raises TypeError (with a suggestion) instead of being
silently ignored; every value is checked against its field's `Allowed` (metadata["allowed"]) whenever it is set, by
the constructor, `configure`, attribute assignment or a file read (TypeError / ValueError naming the field); `root` is
computed when a config is created and `name` when the process makes its first config, not when colbert is imported;
`gpus=None` (the default) means "every visible GPU" and no GPU is queried at import.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import json
import logging
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)


def _default_root() -> str:
    return os.path.join(os.getcwd(), "experiments")


@functools.lru_cache(maxsize=None)
def _timestamp() -> str:
    """The default run name: the time the first config of this process was made, then the same for every config,
    so one script's outputs share one run folder (the reference froze it when colbert was imported)."""
    return datetime.datetime.now().strftime("%Y-%m/%d/%H.%M.%S")


def script_name(root: str) -> str:
    """The reference's run-folder level named after the running script: the script's path relative to the working
    directory (else to the folder it shares with `root`), with dots for slashes and no `.py`; 'none' when there is no
    script file (a notebook, `python -c`, and the reference's spawned workers, which is where its training writes).
    """
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path:
        return "none"
    cwd, path = os.path.abspath(os.getcwd()), os.path.abspath(path)
    if path.startswith(cwd):
        path = path[len(cwd):]
    else:
        try:
            path = path[len(os.path.commonpath([path, os.path.abspath(root)])):]
        except ValueError:  # no common folder (another drive): the whole path, as the reference
            pass
    name = path.replace(os.sep, ".").strip(".")
    return (name[:-3] if name.endswith(".py") else name) or "none"


@dataclass(frozen=True)
class Allowed:
    """The values a field takes: a type (int, float, bool or str), then a range or a list of choices.

    Ints are any integral number but not a bool; floats any finite real; paths (str fields with `path`) may also be
    an os.PathLike, stored as str. Stored values are normalised to the plain Python type.

    >>> Allowed(int, low=1).describe(), Allowed(int, choices=(1, 2, 4)).describe()
    ('an int >= 1', 'one of 1, 2, 4')
    """

    kind: type
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None
    optional: bool = False  # None is allowed
    path: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(map(repr, self.choices))
        else:
            text = {int: "an int", float: "a finite float", bool: "True or False", str: "a str"}[self.kind]
            if self.path:
                text = "a str or os.PathLike path"
            if self.low is not None and self.high is not None:
                text += f" in [{self.low}, {self.high}]"
            elif self.low is not None:
                text += f" >= {self.low}"
            elif self.high is not None:
                text += f" <= {self.high}"
        return text + (", or None" if self.optional else "")

    def normalise(self, owner: str, name: str, value: Any) -> Any:
        """`value` as stored, or TypeError (wrong type) / ValueError (out of range) naming the field."""
        if value is None and self.optional:
            return None
        typed = self._typed(value)
        if typed is _WRONG_TYPE:
            raise TypeError(f"{owner}.{name} must be {self.describe()}; got {value!r} ({type(value).__name__})")
        if self.choices is not None:
            ok = any(type(typed) is type(c) and typed == c for c in self.choices)
        else:
            ok = (self.low is None or typed >= self.low) and (self.high is None or typed <= self.high)
            ok = ok and (self.kind is not float or math.isfinite(typed))
        if not ok:
            raise ValueError(f"{owner}.{name} must be {self.describe()}; got {value!r}")
        return typed

    def _typed(self, value: Any) -> Any:
        if self.choices is not None and any(value is c for c in self.choices):
            return value
        if isinstance(value, bool):
            return value if self.kind is bool else _WRONG_TYPE
        if self.kind is int and isinstance(value, numbers.Integral):
            return int(value)
        if self.kind is float and isinstance(value, numbers.Real):
            return float(value)
        if self.kind is str and isinstance(value, str):
            return value
        if self.kind is str and self.path and isinstance(value, os.PathLike):
            return os.fspath(value)
        if self.choices is not None and isinstance(value, tuple(type(c) for c in self.choices)):
            return value  # right type, not a choice: ValueError below
        return _WRONG_TYPE


_WRONG_TYPE = object()


def _field(default: Any, allowed: Allowed, help: str, factory: Any = None, stored: bool = True) -> Any:
    """A dataclass field with its help text and allowed values in the metadata (docs/config.md shows both).
    `stored=False`: a setting of this machine, left out of `export()` (so out of metadata.json, plan.json and
    artifact.metadata, whose keys stay the reference's)."""
    metadata = {"help": help, "allowed": allowed, "stored": stored}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _int(low: int = 0, optional: bool = False) -> Allowed:
    return Allowed(int, low=low, optional=optional)


_BOOL = Allowed(bool)
_STR = Allowed(str)
_PATH = Allowed(str, path=True, optional=True)
OVERWRITE_VALUES = (False, True, "reuse", "resume", "force_silent_overwrite")

# The run fields, declared once: RunConfig is exactly these, and ColBERTConfig ends with them (the reference's
# order). name -> (type, default, allowed, help, default factory).
_RUN_FIELDS: dict[str, tuple[str, Any, Allowed, str, Any]] = {
    "overwrite": ("Any", False, Allowed(object, choices=OVERWRITE_VALUES),
                  "What to do with an existing index: False (raise), True (rebuild), 'reuse' (keep a complete one), "
                  "'resume' (continue an interrupted build) or 'force_silent_overwrite' (as True).", None),
    "root": ("str", None, Allowed(str, path=True),
             "Root folder of experiments (default: ./experiments when the config is made).", _default_root),
    "experiment": ("str", "default", _STR, "Experiment name: a folder under root.", None),
    "index_root": ("Optional[str]", None, _PATH, "Folder of indexes (default: root/experiment/indexes/).", None),
    "name": ("str", None, _STR, "Run name (default: the time the first config of this process was made).", _timestamp),
    "rank": ("int", 0, _int(0), "This process's rank.", None),
    "nranks": ("int", 1, _int(1), "Number of processes.", None),
    "amp": ("bool", True, _BOOL,
            "Mixed precision: fp16 autocast on CUDA; bf16 for indexing on CPUs with native bf16.", None),
    "gpus": ("Optional[int]", None, _int(0, optional=True),
             "GPUs to use (None: every visible GPU; 0: CPU only).", None),
    "avoid_fork_if_possible": ("bool", False, _BOOL, "Run in-process when nranks == 1.", None),
}


def _with_run_fields(cls: type) -> type:
    """Append the run fields to `cls` before @dataclass reads its annotations."""
    annotations = cls.__dict__.get("__annotations__")
    if annotations is None:
        annotations = {}
        setattr(cls, "__annotations__", annotations)
    for name, (type_, default, allowed, text, factory) in _RUN_FIELDS.items():
        annotations[name] = type_
        setattr(cls, name, _field(default, allowed, text, factory))
    return cls


class _Assigned:
    """Shared machinery: one constructor, values checked against each field's `Allowed` whenever they are set,
    which fields were set explicitly, unknown-key errors, JSON round trip."""

    _assigned: frozenset

    def __init__(self, *configs: Any, **kwargs: Any) -> None:
        """Fields from `kwargs`; positional configs (the reference's `ColBERTConfig(other, key=value)`) are merged
        first, their assigned fields overridden by `kwargs`. A keyword given as None keeps the default and does not
        count as assigned."""
        for config in configs:
            if not isinstance(config, _Assigned):
                raise TypeError(f"{type(self).__name__}() takes keyword arguments and configs to merge, got "
                                f"{config!r:.80} ({type(config).__name__}); write e.g. {type(self).__name__}(nbits=2)")
        if configs:
            merged = type(self).from_existing(*configs)
            kwargs = {**{k: getattr(merged, k) for k in merged._assigned}, **kwargs}
        self._check_keys(kwargs)
        given = {k: v for k, v in kwargs.items() if v is not None}
        for f in dataclasses.fields(self):
            if f.name in given:
                setattr(self, f.name, given[f.name])
            else:
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
                object.__setattr__(self, f.name, default)
        object.__setattr__(self, "_assigned", frozenset(given))

    def __setattr__(self, name: str, value: Any) -> None:
        spec = self.__dataclass_fields__.get(name)  # type: ignore[attr-defined]
        if spec is not None and "allowed" in spec.metadata:
            value = spec.metadata["allowed"].normalise(type(self).__name__, name, value)
        object.__setattr__(self, name, value)

    @classmethod
    def _check_keys(cls, keys: Any) -> None:
        names = {f.name for f in dataclasses.fields(cls)}
        for key in keys:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; see help({cls.__name__}) for the fields"
                raise TypeError(f"{cls.__name__} has no field '{key}'{hint}")

    @property
    def assigned(self) -> dict[str, bool]:
        """The explicitly set fields, as the reference's `config.assigned` dict."""
        return {k: True for k in self._assigned}

    def configure(self, ignore_unrecognized: bool = False, **kwargs: Any) -> set[str]:
        """Set fields in place and mark them assigned; return the keys that were ignored.

        Unknown keys raise TypeError unless `ignore_unrecognized=True` (used when reading files written by other
        versions).
        """
        names = {f.name for f in dataclasses.fields(self)}
        ignored = {k for k in kwargs if k not in names}
        if ignored and not ignore_unrecognized:
            self._check_keys(kwargs)
        known = {k: v for k, v in kwargs.items() if k in names}
        for key, value in known.items():  # every value checked before any is set
            self._allowed(key).normalise(type(self).__name__, key, value)
        for key, value in known.items():
            setattr(self, key, value)
        object.__setattr__(self, "_assigned", self._assigned | known.keys())
        return ignored

    @classmethod
    def _allowed(cls, name: str) -> Allowed:
        return cls.__dataclass_fields__[name].metadata["allowed"]  # type: ignore[attr-defined]

    def replace(self, **kwargs: Any) -> Any:
        """A copy with `kwargs` set and assigned; this config is left as it is (facades derive per-call configs)."""
        copy = type(self).from_existing(self)
        copy.configure(**kwargs)
        return copy

    def set(self, key: str, value: Any, ignore_unrecognized: bool = False) -> bool:
        """Set one field (the reference's `config.set`); return whether it was recognised."""
        return not self.configure(ignore_unrecognized=ignore_unrecognized, **{key: value})

    @classmethod
    def from_existing(cls, *sources: Any) -> Any:
        """Merge configs: for each source in order, its assigned fields override what came before.

        A field assigned None stays assigned (as in the reference), so it still overrides earlier sources.
        """
        kwargs: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for source in sources:
            if source is None:
                continue
            kwargs.update({k: getattr(source, k) for k in source._assigned if k in names})
        merged = cls(**kwargs)
        object.__setattr__(merged, "_assigned", frozenset(kwargs))
        return merged

    @classmethod
    def all_assigned(cls, **kwargs: Any) -> Any:
        """A config whose every field counts as assigned, defaults included (the reference's `assign_defaults`)."""
        config = cls(**kwargs)
        object.__setattr__(config, "_assigned", frozenset(f.name for f in dataclasses.fields(cls)))
        return config

    def only(self, names: Any) -> Any:
        """A copy in which only `names` count as assigned (so merging it changes just those fields)."""
        copy = type(self).from_existing(self)
        object.__setattr__(copy, "_assigned", frozenset(names) & self._assigned)
        return copy

    def export(self) -> dict[str, Any]:
        """Every stored field as a JSON-ready dict, in declaration order (= the reference's keys, in its order)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["stored"]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from a dict read from disk: unknown keys (other versions, `meta`) are logged and skipped."""
        obj = cls()
        ignored = obj.configure(ignore_unrecognized=True, **data)
        if ignored - {"meta"}:
            logger.debug("Ignoring unknown config keys %s", sorted(ignored))
        return obj

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> Any:
        """Load a config saved as JSON, either bare or under a "config" key (plan.json, metadata.json)."""
        from colbert.utils.io import load_json

        data = load_json(path, what="config file")
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            data = data["config"]
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} does not hold a JSON object")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config file {path}: {e}. Fix the value in the file or write it again.") from e

    def help(self) -> str:
        """Return each field with its value and help text (the reference printed its export)."""
        lines = []
        for f in dataclasses.fields(self):
            allowed = f.metadata["allowed"].describe()
            lines.append(f"{f.name} = {getattr(self, f.name)!r}  # {f.metadata['help']} Allowed: {allowed}.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return json.dumps(self.export(), indent=4)

    @property
    def index_root_(self) -> str:
        """Folder of named indexes: `index_root`, else root/experiment/indexes/ (both configs have these fields)."""
        return self.index_root or os.path.join(self.root, self.experiment, "indexes/")  # type: ignore[attr-defined]

    @property
    def script_name_(self) -> str:
        return script_name(self.root)  # type: ignore[attr-defined]

    @property
    def path_(self) -> str:
        """The run's folder, where Ranking.save puts relative names: root/experiment/<script name>/name."""
        return os.path.join(self.root, self.experiment, self.script_name_, self.name)  # type: ignore[attr-defined]


@dataclass(eq=False, init=False)
@_with_run_fields
class ColBERTConfig(_Assigned):
    """Every setting of tokenization, the model, indexing, search, training and runs, in the reference's order.

    Example:
        >>> config = ColBERTConfig(nbits=2, doc_maxlen=180)
        >>> config.nbits, config.query_maxlen, sorted(config.assigned)
        (2, 32, ['doc_maxlen', 'nbits'])
    """

    # Declared in the reference's export order, which is the key order of artifact.metadata and metadata.json.
    # --- tokenizer ---
    query_token_id: str = _field("[unused0]", _STR, "Vocabulary token that marks a query, inserted after [CLS].")
    doc_token_id: str = _field("[unused1]", _STR, "Vocabulary token that marks a document, inserted after [CLS].")
    query_token: str = _field("[Q]", _STR, "Display name of the query marker.")
    doc_token: str = _field("[D]", _STR, "Display name of the document marker.")
    # --- search ---
    ncells: Optional[int] = _field(None, _int(1, optional=True),
                                   "Centroids probed per query vector (None: chosen from k).")
    centroid_score_threshold: Optional[float] = _field(
        None, Allowed(float, optional=True),
        "PLAID pruning: centroids scoring below this for every query vector are ignored (None: chosen from k).")
    ndocs: Optional[int] = _field(None, _int(4, optional=True), "Candidates kept after centroid interaction; "
                                  "ndocs // 4 of them are scored exactly (None: chosen from k).")
    load_index_with_mmap: bool = _field(False, _BOOL, "Memory-map codes and residuals instead of reading them into "
                                        "RAM (saves memory; files must then not be changed in place while open).")
    # --- indexing ---
    index_path: Optional[str] = _field(None, _PATH, "Full path of the index (default: index_root/index_name).")
    index_bsize: int = _field(64, _int(1), "Documents encoded per batch while indexing.")
    nbits: int = _field(1, Allowed(int, choices=(1, 2, 4)), "Bits per residual dimension.")
    kmeans_niters: int = _field(4, _int(0), "k-means iterations when fitting centroids (0: the sampled starts).")
    resume: bool = _field(False, _BOOL, "Resume an interrupted run where it stopped.")
    pool_factor: int = _field(1, _int(1), "Token pooling factor (1: no pooling).")
    clustering_mode: str = _field("hierarchical", Allowed(str, choices=("hierarchical",)), "Token pooling method.")
    protected_tokens: int = _field(0, _int(0), "Leading tokens never pooled.")
    platform_workarounds: bool = _field(True, _BOOL, "The CPU build's platform workarounds (allocator trimming, "
                                        "oneDNN batch-length padding, encoder output buffers): they change memory, "
                                        "never the index; False turns all three off. Not stored with the index.",
                                        stored=False)
    # --- training ---
    similarity: str = _field("cosine", Allowed(str, choices=("cosine", "l2")),
                             "Similarity of MaxSim: 'cosine' (dot product of normalised vectors); 'l2' is kept for "
                             "reading reference configs, and indexing, search and training refuse it.")
    bsize: int = _field(32, _int(1), "Training batch size (queries per step, over all ranks).")
    accumsteps: int = _field(1, _int(1), "Gradient accumulation steps.")
    lr: float = _field(3e-06, Allowed(float, low=0), "Peak learning rate.")
    maxsteps: int = _field(500_000, _int(1), "Training steps.")
    save_every: Optional[int] = _field(None, _int(1, optional=True),
                                       "Save a checkpoint every this many steps (None: only at the end).")
    warmup: Optional[int] = _field(None, _int(0, optional=True),
                                   "Linear warmup steps (None: no warmup, linear decay only when set).")
    warmup_bert: Optional[int] = _field(None, _int(0, optional=True),
                                        "Steps during which the encoder is frozen (None: never).")
    relu: bool = _field(False, _BOOL, "Unused; kept for compatibility.")
    nway: int = _field(2, _int(1), "Documents per training query: one positive and nway-1 negatives.")
    use_ib_negatives: bool = _field(False, _BOOL,
                                    "Also score every query against every other query's documents in the batch.")
    reranker: bool = _field(False, _BOOL, "Unused; kept for compatibility.")
    distillation_alpha: float = _field(1.0, Allowed(float, low=0),
                                       "Weight of the KL distillation loss when teacher scores are given.")
    ignore_scores: bool = _field(False, _BOOL,
                                 "Ignore teacher scores in the triples and train with cross-entropy only.")
    model_name: Optional[str] = _field(None, _PATH, "Backbone or checkpoint name the model was built from.")
    # --- query ---
    query_maxlen: int = _field(32, Allowed(int, low=3, high=512),
                               "Query length in tokens, padded with [MASK] ([CLS], [Q] and [SEP] included).")
    attend_to_mask_tokens: bool = _field(False, _BOOL, "Let the encoder attend to the [MASK] padding of queries.")
    interaction: str = _field("colbert", Allowed(str, choices=("colbert", "flipr")),
                              "Late interaction: 'colbert' (MaxSim) or 'flipr'.")
    # --- document ---
    dim: int = _field(128, _int(1), "Embedding dimension of the linear head.")
    doc_maxlen: int = _field(220, _int(3), "Documents are truncated to this many tokens, markers included (at most "
                                           "the model's position embeddings, checked when a checkpoint loads).")
    mask_punctuation: bool = _field(True, _BOOL, "Drop punctuation tokens from document embeddings.")
    # --- resources ---
    checkpoint: Optional[str] = _field(None, _PATH, "Checkpoint folder or hub name.")
    triples: Optional[str] = _field(None, _PATH, "Training triples file (JSONL).")
    collection: Optional[str] = _field(None, _PATH, "Collection TSV (pid<TAB>text).")
    queries: Optional[str] = _field(None, _PATH, "Queries TSV (qid<TAB>text).")
    index_name: Optional[str] = _field(None, Allowed(str, optional=True), "Index name under index_root.")
    # --- run: _RUN_FIELDS, appended by @_with_run_fields (declared once, shared with RunConfig) ---

    @property
    def index_path_(self) -> Optional[str]:
        if self.index_path:
            return self.index_path
        return os.path.join(self.index_root_, self.index_name) if self.index_name else None

    @property
    def total_visible_gpus(self) -> int:
        import torch

        return torch.cuda.device_count()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str) -> Optional["ColBERTConfig"]:
        """The config stored with a checkpoint (`artifact.metadata`), or None for a plain backbone name."""
        from colbert.modeling.hf_format import load_checkpoint_config

        return load_checkpoint_config(checkpoint_path)

    @classmethod
    def load_from_index(cls, index_path: str | os.PathLike) -> "ColBERTConfig":
        """The config stored with an index (metadata.json, else plan.json)."""
        index_path = Path(index_path)
        for name in ("metadata.json", "plan.json"):
            if (index_path / name).exists():
                return cls.from_path(index_path / name)
        raise FileNotFoundError(
            f"{index_path} holds no metadata.json or plan.json; it is not an index. Check the path, or build it "
            "with Indexer.index(name, collection)."
        )

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the config as JSON (with a `meta` block, as the reference does)."""
        from colbert.utils.io import atomic_write_json

        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        data = self.export()
        data["meta"] = {"version": "colbert-v0.4", "writer": "colbert (clean-room)"}
        atomic_write_json(path, data)

    def save_for_checkpoint(self, checkpoint_path: str | os.PathLike) -> None:
        self.save(os.path.join(checkpoint_path, "artifact.metadata"), overwrite=True)


@dataclass(eq=False, init=False)
@_with_run_fields
class RunConfig(_Assigned):
    """Settings of a run: where outputs go and how many processes take part.

    Example:
        >>> RunConfig(nranks=2, experiment="scifact").nranks
        2
    """

    # The fields are _RUN_FIELDS, added by @_with_run_fields.



def check_config(config: Any, name: str = "config") -> None:
    """A facade's `config` argument: a ColBERTConfig, a RunConfig or None, else a TypeError naming it."""
    if config is not None and not isinstance(config, (ColBERTConfig, RunConfig)):
        raise TypeError(f"{name} must be a ColBERTConfig (or None), got {config!r:.80} ({type(config).__name__}); "
                        "write e.g. ColBERTConfig(nbits=2)")

# The reference's names at package level (its colbert/infra/config/__init__.py star-imports config.py and
# settings.py): it assembles ColBERTConfig from eight settings dataclasses; here there is one flat dataclass, so each
# is ColBERTConfig itself (`RunSettings(nranks=2)` makes a ColBERTConfig with nranks=2; docs/compat.md).
BaseConfig = CoreConfig = ColBERTConfig
RunSettings = TokenizerSettings = ResourceSettings = DocSettings = QuerySettings = ColBERTConfig
TrainingSettings = IndexingSettings = SearchSettings = ColBERTConfig
SETTINGS_NAMES = ("RunSettings", "TokenizerSettings", "ResourceSettings", "DocSettings", "QuerySettings",
                  "TrainingSettings", "IndexingSettings", "SearchSettings")


@dataclass
class DefaultVal:
    """The reference's marker of a default value (its dataclasses used `field: int = DefaultVal(3)`). Here defaults
    are plain dataclass defaults and `assigned` records what was set; DefaultVal is kept for code that builds its
    own dataclasses with it."""

    val: Any

    def __hash__(self) -> int:
        return hash(repr(self.val))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DefaultVal) and self.val == other.val


def config_markdown() -> str:
    """docs/config.md, generated from the field metadata (a test checks the file is up to date)."""
    lines = ["# ColBERTConfig reference", "",
             "Generated from `colbert/infra/config.py` by `python -m colbert.infra > docs/config.md`.", "",
             "Every value is checked when it is set (constructor, `configure`, attribute assignment, configs read from",
             "files): a value of the wrong type raises TypeError, one outside the allowed values ValueError, both",
             "naming the field, the value and what is allowed.", "",
             "| field | default | allowed | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(ColBERTConfig):
        default = f.default if f.default is not dataclasses.MISSING else "(computed: " + (
            "./experiments" if f.name == "root" else "a timestamp") + ")"
        allowed = f.metadata["allowed"].describe().replace("|", "\\|")
        lines.append(f"| `{f.name}` | `{default!r}` | {allowed} | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"


# The reference's submodule paths (colbert.infra.config.config, .settings, ...) live in this folder: a module with a
# __path__ is searched for submodules like a package.
__path__ = [str(Path(__file__).with_name("config_paths"))]
