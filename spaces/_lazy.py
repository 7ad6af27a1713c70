"""Package attributes imported on first use (PEP 562), so light modules stay light.

``import jointnas.search.storage`` must not pull in torch: the packages' ``__init__`` modules name
their public API here instead of importing every submodule up front.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule) on first use.

    Example:
        >>> getattr_ = lazy_exports("jointnas.spaces", {"Candidate": "candidate"})
        >>> getattr_("Candidate").__name__
        'Candidate'
    """

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
