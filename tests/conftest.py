"""Shared pytest configuration: server fixtures live in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.oidc",
    "tests.fixtures.s3",
    "tests.fixtures.watchdog",
]
