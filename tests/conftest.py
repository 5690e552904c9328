"""Fixtures shared by the whole suite live in tests/support/, one module per real part."""

pytest_plugins = ["tests.support.redis_server", "tests.support.emulator_server",
                  "tests.support.rabbitmq"]
