"""Run(): a stack of RunConfig kept in a ContextVar. Only the facades read it."""

from __future__ import annotations

import contextvars
import dataclasses
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from colbert.infra.config import ColBERTConfig, RunConfig

LOCATION_FIELDS = ("root", "experiment", "index_root", "name")  # where indexes and run outputs go

_STACK: contextvars.ContextVar[tuple[RunConfig, ...]] = contextvars.ContextVar("colbert_run_stack", default=())


class Run:
    """The reference's `Run()`: `with Run().context(RunConfig(...)):` sets run settings for the facades inside.

    Every `Run()` shares one stack per context (thread / asyncio task), so nested contexts inherit and restore.

    Example:
        >>> with Run().context(RunConfig(nranks=2, experiment="demo")):
        ...     Run().config.nranks, Run().experiment
        (2, 'demo')
        >>> Run().config.nranks
        1
    """

    @property
    def config(self) -> RunConfig:
        stack = _STACK.get()
        return stack[-1] if stack else RunConfig()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.config, name)

    def resolve(self, *stored: Any, config: Any = None, **fixed: Any) -> ColBERTConfig:
        """The settings a facade uses, lowest first: configs stored with a checkpoint or index, RunConfig's defaults
        (stored root, experiment, nranks, gpus... describe the machine that wrote them and never apply here, as in
        the reference), the caller's `config`, this Run context's assigned fields, the location (`where`), then
        `fixed` (what the facade was given as arguments, e.g. checkpoint=)."""
        return ColBERTConfig.from_existing(*stored, RunConfig.all_assigned(), config, self.config,
                                           self.where(config, stacklevel=4), ColBERTConfig(**fixed) if fixed else None)

    def where(self, config: Any = None, stacklevel: int = 3) -> ColBERTConfig:
        """root, experiment, index_root and name as the reference decides them: from this Run (its context, else
        RunConfig's defaults), never from a facade's `config=`, which colbert-ai ignores for these fields (its Run()
        always has all of them assigned). Warns when a config made by hand (not read from a file or resolved by a
        facade, which have every field assigned) sets one of them to something else."""
        run = RunConfig.from_existing(RunConfig.all_assigned(), self.config)
        by_hand = config is not None and not {f.name for f in dataclasses.fields(config)} <= set(config.assigned)
        ignored = [k for k in LOCATION_FIELDS if by_hand and k in config.assigned
                   and getattr(config, k) != getattr(run, k)]
        if ignored:
            given = ", ".join(f"{k}={getattr(config, k)!r}" for k in ignored)
            warnings.warn(f"ColBERTConfig({given}) passed as config= is ignored, as colbert-ai ignores it: files go "
                          f"under the Run's {', '.join(f'{k}={getattr(run, k)!r}' for k in ignored)}. Set them with "
                          f"Run().context(RunConfig({given})), or give the index folder with index_path=...",
                          stacklevel=stacklevel)
        return ColBERTConfig.from_existing(run).only(LOCATION_FIELDS)

    @contextmanager
    def context(self, runconfig: RunConfig, inherit_config: bool = True) -> Iterator[RunConfig]:
        if inherit_config:
            runconfig = RunConfig.from_existing(self.config, runconfig)
        token = _STACK.set(_STACK.get() + (runconfig,))
        try:
            yield runconfig
        finally:
            _STACK.reset(token)
