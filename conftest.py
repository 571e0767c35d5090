"""Root conftest: shared fixtures for the core tests and both integration packages."""

pytest_plugins = ["tests.fixtures"]
