"""The reference's modules under `colbert.infra.config.*` (config, settings, base_config, core_config).

`colbert/infra/config.py` is a module; it lists this folder as its `__path__`, so
`from colbert.infra.config.config import ColBERTConfig` finds the files here. Each only re-exports.
"""
