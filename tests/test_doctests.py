"""Every ``>>>`` example in the package runs and shows what its docstring says."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import monoai_tornado

MODULES = sorted(info.name for info in pkgutil.walk_packages(monoai_tornado.__path__, "monoai_tornado.")
                 if info.name != "monoai_tornado.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False, report=True)
    assert failed == 0, f"{name}: {failed} docstring example(s) do not show what they say"
