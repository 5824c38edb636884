"""Run(): a stack of RunConfig kept in a ContextVar. Only the facades read it."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Iterator

from colbert.infra.config import ColBERTConfig, RunConfig

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
        the reference), the caller's `config`, this Run context's assigned fields, then `fixed` (what the facade
        was given as arguments, e.g. checkpoint=)."""
        return ColBERTConfig.from_existing(*stored, RunConfig.all_assigned(), config, self.config,
                                           ColBERTConfig(**fixed) if fixed else None)

    @contextmanager
    def context(self, runconfig: RunConfig, inherit_config: bool = True) -> Iterator[RunConfig]:
        if inherit_config:
            runconfig = RunConfig.from_existing(self.config, runconfig)
        token = _STACK.set(_STACK.get() + (runconfig,))
        try:
            yield runconfig
        finally:
            _STACK.reset(token)
