"""The echo mocks and executor (engine/echo.py), for the tests."""
from engine.echo import SHARED_MARK, KEY_MARK, TOKEN_MARK, EchoExecutor, EchoMocks

__all__ = ["SHARED_MARK", "KEY_MARK", "TOKEN_MARK", "EchoExecutor", "EchoMocks"]
