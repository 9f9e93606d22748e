"""The test suite (a package, so its helpers import one way: ``from tests.support.X import ...``)."""
