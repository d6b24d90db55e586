"""The examples in the code's docstrings run: a doctest that drifts from the code fails here."""
import doctest
import importlib
import pkgutil

import pytest

from conftest import REPO

PACKAGES = ("foundation", "training", "baselines", "decision", "tuner", "reports", "advisor", "service", "commands")


def modules():
    for package in PACKAGES:
        yield package
        for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
            yield info.name


@pytest.mark.parametrize("name", sorted(set(modules())))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed (run it with -s)"
