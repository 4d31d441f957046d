"""edmem: an encoder-decoder transformer with an entity memory (EDMem, Zhang et al., EMNLP 2022).

Data flows one way: files -> examples -> tensors -> model -> top-k ids -> predictions.json -> metrics.
``edmem.EntityLinker`` (raw questions -> answer entity, docs/linking.md) is imported on first use;
``import edmem`` itself imports neither torch nor transformers (``edmem.evaluation`` needs
neither), yet makes ``AutoConfig``/``AutoModel`` know the ``edmem`` model type (see
:mod:`edmem._auto`).
"""

from typing import Any

from edmem import _auto

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "EntityLinker": "edmem.inference.linker",
    "LinkResult": "edmem.inference.linker",
    "EntityScore": "edmem.inference.linker",
    "MentionLink": "edmem.inference.linker",
    "EDMemConfig": "edmem.config",
    "EDMemModel": "edmem.modeling.model",
}
__all__ = [*_LAZY, "__version__"]

_auto.install()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edmem' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
