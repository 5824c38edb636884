"""ColBERTConfig and RunConfig: one flat, documented dataclass each.

Merge rules (the reference's precedence, applied by the facades only):

| source, lowest first                 | read by                         |
|--------------------------------------|---------------------------------|
| field defaults below                 | everything                      |
| checkpoint `artifact.metadata`       | Checkpoint, Indexer, Searcher   |
| index `metadata.json` (or plan.json) | Searcher, IndexUpdater          |
| `config=` passed to a facade         | every facade                    |
| `Run().context(RunConfig(...))`      | every facade                    |

A field counts as *assigned* when it was passed to the constructor (with a value other than None) or set through
`configure()`; only assigned fields override lower sources in `ColBERTConfig.from_existing(*sources)`. Configs read
from JSON have every field they contain assigned.

Differences from the reference, on purpose: an unknown keyword raises TypeError (with a suggestion) instead of
being silently ignored; `root` and `name` are computed when a config is created, not when colbert is imported;
`gpus=None` (the default) means "every visible GPU" and no GPU is queried at import.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

logger = logging.getLogger(__name__)


def _default_root() -> str:
    return os.path.join(os.getcwd(), "experiments")


def _timestamp() -> str:
    return datetime.datetime.now().strftime("%Y-%m/%d/%H.%M.%S")


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


def _help_factory(text: str, factory: Any) -> Any:
    return field(default_factory=factory, metadata={"help": text})


class _Assigned:
    """Shared machinery: which fields were set explicitly, unknown-key errors, JSON round trip."""

    _assigned: frozenset

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # replaced per class by _wrap_init
        raise NotImplementedError

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
        for key, value in kwargs.items():
            if key in names:
                object.__setattr__(self, key, value)
        object.__setattr__(self, "_assigned", self._assigned | (kwargs.keys() - ignored))
        return ignored

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

    def export(self) -> dict[str, Any]:
        """Every field as a JSON-ready dict, in declaration order (= the reference's key order)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

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
        return cls.from_dict(data)

    def help(self) -> str:
        """Return each field with its value and help text (the reference printed its export)."""
        lines = []
        for f in dataclasses.fields(self):
            lines.append(f"{f.name} = {getattr(self, f.name)!r}  # {f.metadata.get('help', '')}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return json.dumps(self.export(), indent=4)

    @property
    def index_root_(self) -> str:
        """Folder of named indexes: `index_root`, else root/experiment/indexes/ (both configs have these fields)."""
        return self.index_root or os.path.join(self.root, self.experiment, "indexes/")  # type: ignore[attr-defined]


def _wrap_init(cls: type) -> type:
    generated = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            # The reference allowed ColBERTConfig(other_config, key=value): merge positional configs first.
            merged = cls.from_existing(*args)
            merged_kwargs = {k: getattr(merged, k) for k in merged._assigned}
            kwargs = {**merged_kwargs, **kwargs}
        cls._check_keys(kwargs)
        given = {k: v for k, v in kwargs.items() if v is not None}
        generated(self, **given)
        object.__setattr__(self, "_assigned", frozenset(given))

    __init__.__doc__ = generated.__doc__
    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_wrap_init
@dataclass(eq=False)
class ColBERTConfig(_Assigned):
    """Every setting of tokenization, the model, indexing, search, training and runs, in the reference's order.

    Example:
        >>> config = ColBERTConfig(nbits=2, doc_maxlen=180)
        >>> config.nbits, config.query_maxlen, sorted(config.assigned)
        (2, 32, ['doc_maxlen', 'nbits'])
    """

    # Declared in the reference's export order, which is the key order of artifact.metadata and metadata.json.
    # --- tokenizer ---
    query_token_id: str = _help("Vocabulary token that marks a query, inserted after [CLS].", "[unused0]")
    doc_token_id: str = _help("Vocabulary token that marks a document, inserted after [CLS].", "[unused1]")
    query_token: str = _help("Display name of the query marker.", "[Q]")
    doc_token: str = _help("Display name of the document marker.", "[D]")
    # --- search ---
    ncells: Optional[int] = _help("Centroids probed per query vector (None: chosen from k).", None)
    centroid_score_threshold: Optional[float] = _help(
        "PLAID pruning: centroids scoring below this for every query vector are ignored (None: chosen from k).", None
    )
    ndocs: Optional[int] = _help("Candidates kept after centroid interaction (None: chosen from k).", None)
    load_index_with_mmap: bool = _help("Memory-map codes and residuals instead of reading them into RAM.", False)
    # --- indexing ---
    index_path: Optional[str] = _help("Full path of the index (default: index_root/index_name).", None)
    index_bsize: int = _help("Documents encoded per batch while indexing.", 64)
    nbits: int = _help("Bits per residual dimension: 1, 2 or 4.", 1)
    kmeans_niters: int = _help("k-means iterations when fitting centroids.", 4)
    resume: bool = _help("Resume an interrupted run where it stopped.", False)
    pool_factor: int = _help("Token pooling factor (1: no pooling).", 1)
    clustering_mode: str = _help("Token pooling method.", "hierarchical")
    protected_tokens: int = _help("Leading tokens never pooled.", 0)
    # --- training ---
    similarity: str = _help("Similarity of MaxSim: 'cosine' (dot product of normalised vectors) or 'l2'.", "cosine")
    bsize: int = _help("Training batch size (queries per step, over all ranks).", 32)
    accumsteps: int = _help("Gradient accumulation steps.", 1)
    lr: float = _help("Peak learning rate.", 3e-06)
    maxsteps: int = _help("Training steps.", 500_000)
    save_every: Optional[int] = _help("Save a checkpoint every this many steps (None: only at the end).", None)
    warmup: Optional[int] = _help("Linear warmup steps (None: no warmup, linear decay only when set).", None)
    warmup_bert: Optional[int] = _help("Steps during which the encoder is frozen (None: never).", None)
    relu: bool = _help("Unused; kept for compatibility.", False)
    nway: int = _help("Documents per training query: one positive and nway-1 negatives.", 2)
    use_ib_negatives: bool = _help("Also score every query against every other query's documents in the batch.", False)
    reranker: bool = _help("Unused; kept for compatibility.", False)
    distillation_alpha: float = _help("Weight of the KL distillation loss when teacher scores are given.", 1.0)
    ignore_scores: bool = _help("Ignore teacher scores in the triples and train with cross-entropy only.", False)
    model_name: Optional[str] = _help("Backbone or checkpoint name the model was built from.", None)
    # --- query ---
    query_maxlen: int = _help("Query length in tokens, padded with [MASK].", 32)
    attend_to_mask_tokens: bool = _help("Let the encoder attend to the [MASK] padding of queries.", False)
    interaction: str = _help("Late interaction: 'colbert' (MaxSim) or 'flipr'.", "colbert")
    # --- document ---
    dim: int = _help("Embedding dimension of the linear head.", 128)
    doc_maxlen: int = _help("Documents are truncated to this many tokens, markers included.", 220)
    mask_punctuation: bool = _help("Drop punctuation tokens from document embeddings.", True)
    # --- resources ---
    checkpoint: Optional[str] = _help("Checkpoint folder or hub name.", None)
    triples: Optional[str] = _help("Training triples file (JSONL).", None)
    collection: Optional[str] = _help("Collection TSV (pid<TAB>text).", None)
    queries: Optional[str] = _help("Queries TSV (qid<TAB>text).", None)
    index_name: Optional[str] = _help("Index name under index_root.", None)
    # --- run ---
    overwrite: Any = _help("What to do with an existing index: False, True, 'reuse' or 'resume'.", False)
    root: str = _help_factory("Root folder of experiments (default: ./experiments when the config is made).",
                              _default_root)
    experiment: str = _help("Experiment name: a folder under root.", "default")
    index_root: Optional[str] = _help("Folder of indexes (default: root/experiment/indexes/).", None)
    name: str = _help_factory("Run name (default: a timestamp taken when the config is made).", _timestamp)
    rank: int = _help("This process's rank.", 0)
    nranks: int = _help("Number of processes.", 1)
    amp: bool = _help("Mixed precision: fp16 autocast on CUDA; bf16 for indexing on CPUs with native bf16.", True)
    gpus: Optional[int] = _help("GPUs to use (None: every visible GPU; 0: CPU only).", None)
    avoid_fork_if_possible: bool = _help("Run in-process when nranks == 1.", False)

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


RUN_FIELDS = ("overwrite", "root", "experiment", "index_root", "name", "rank", "nranks", "amp", "gpus",
              "avoid_fork_if_possible")


@_wrap_init
@dataclass(eq=False)
class RunConfig(_Assigned):
    """Settings of a run: where outputs go and how many processes take part.

    Example:
        >>> RunConfig(nranks=2, experiment="scifact").nranks
        2
    """

    overwrite: Any = _help("What to do with existing outputs.", False)
    root: str = _help_factory("Root folder of experiments.", _default_root)
    experiment: str = _help("Experiment name: a folder under root.", "default")
    index_root: Optional[str] = _help("Folder of indexes (default: root/experiment/indexes/).", None)
    name: str = _help_factory("Run name (default: a timestamp).", _timestamp)
    rank: int = _help("This process's rank.", 0)
    nranks: int = _help("Number of processes.", 1)
    amp: bool = _help("Mixed precision: fp16 on CUDA; bf16 for indexing on CPUs with native bf16.", True)
    gpus: Optional[int] = _help("GPUs to use (None: every visible GPU; 0: CPU only).", None)
    avoid_fork_if_possible: bool = _help("Run in-process when nranks == 1.", False)

    @property
    def path_(self) -> str:
        return os.path.join(self.root, self.experiment, self.name)




def config_markdown() -> str:
    """docs/config.md, generated from the field metadata (a test checks the file is up to date)."""
    lines = ["# ColBERTConfig reference", "",
             "Generated from `colbert/infra/config.py` by `python -m colbert.infra > docs/config.md`.", "",
             "| field | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(ColBERTConfig):
        default = f.default if f.default is not dataclasses.MISSING else "(computed: " + (
            "./experiments" if f.name == "root" else "a timestamp") + ")"
        lines.append(f"| `{f.name}` | `{default!r}` | {f.metadata.get('help', '')} |")
    return "\n".join(lines) + "\n"


# The reference's submodule paths (colbert.infra.config.config, .settings, ...) live in this folder: a module with a
# __path__ is searched for submodules like a package.
__path__ = [str(Path(__file__).with_name("config_paths"))]
