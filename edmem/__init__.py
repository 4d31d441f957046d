"""edmem: an encoder-decoder transformer with an entity memory (EDMem, Zhang et al., EMNLP 2022).

Data flows one way: files -> examples -> tensors -> model -> top-k ids -> predictions.json -> metrics.
``edmem.EntityLinker`` (raw questions -> answer entity, docs/linking.md) is imported on first use;
``import edmem`` itself imports neither torch nor transformers (``edmem.evaluation`` needs
neither), yet makes ``AutoConfig``/``AutoModel`` know the ``edmem`` model type: it only adds an
import hook; when transformers loads its Auto-config or Auto-model module (the first time
``transformers.AutoConfig``/``AutoModel`` is touched), the hook registers edmem's classes right
after that module has run. If those modules are already loaded, registration happens at once.
"""

import importlib.abc
import sys
from typing import Any

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

_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
_MODEL_MODULE = "transformers.models.auto.modeling_auto"
_REGISTER = {_CONFIG_MODULE: "edmem.config", _MODEL_MODULE: "edmem.modeling.model"}


def _register(module_name: str) -> None:
    """Import the edmem module whose import registers the classes (``exist_ok=True`` there)."""
    import importlib
    importlib.import_module(_REGISTER[module_name])


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, name: str):
        self.inner, self.name = inner, name

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        _register(self.name)


class _AutoFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the two transformers Auto modules; finds nothing else."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _REGISTER:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None


def _install_auto_hook() -> None:
    """Add the hook once; register now for Auto modules transformers has already loaded."""
    if not any(type(f).__name__ == "_AutoFinder" for f in sys.meta_path):
        sys.meta_path.insert(0, _AutoFinder())
    for name in _REGISTER:
        if name in sys.modules:
            _register(name)


_install_auto_hook()


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
