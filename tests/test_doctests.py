"""Every docstring example in the five packages runs and prints what it shows (CI runs this file).

One test per module that has examples; `doctest` runs them in the module's own namespace.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import jointnas.compression
import jointnas.devices
import jointnas.objectives
import jointnas.search
import jointnas.spaces

PACKAGES = (jointnas.search, jointnas.spaces, jointnas.objectives, jointnas.compression, jointnas.devices)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(n for n in names if not n.endswith("__main__"))


def _with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    return [name for name in _modules() if any(t.examples for t in finder.find(importlib.import_module(name)))]


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_there_are_examples_to_run() -> None:
    assert len(_with_examples()) >= 15


def test_storage_and_its_errors_do_not_import_torch() -> None:
    """Opening a storage (a worker's first step, a dashboard) needs neither torch nor the model code."""
    code = "import sys, jointnas.search.storage, jointnas.spaces; from jointnas.spaces import UserInputError; "
    code += "print(sorted(m for m in ('torch', 'jointnas.spaces.families') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
