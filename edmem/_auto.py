"""Register ``EDMemConfig``/``EDMemModel`` with transformers' Auto classes without importing them.

``import edmem`` must stay free of torch and transformers (the evaluation scripts run without
them), yet ``import edmem; AutoModel.from_pretrained("runs/demo/model")`` must work. So
:func:`install` only adds an import hook: when transformers loads its Auto-config or Auto-model
module (which happens the first time ``transformers.AutoConfig``/``AutoModel`` is touched), the
hook registers edmem's classes right after that module has run. If those modules are already
loaded, registration happens at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any

CONFIG_MODULE = "transformers.models.auto.configuration_auto"
MODEL_MODULE = "transformers.models.auto.modeling_auto"
_REGISTER = {CONFIG_MODULE: "edmem.config", MODEL_MODULE: "edmem.modeling.model"}


def _register(module_name: str) -> None:
    """Import the edmem module whose import registers the classes (``exist_ok=True`` there)."""
    import importlib
    importlib.import_module(_REGISTER[module_name])


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, name: str):
        self.inner, self.name = inner, name

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)  # type: ignore[attr-defined]
        _register(self.name)


class _Finder(importlib.abc.MetaPathFinder):
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


def install() -> None:
    """Add the hook once; register now for Auto modules transformers has already loaded."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name in _REGISTER:
        if name in sys.modules:
            _register(name)
