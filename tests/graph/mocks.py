"""The echo mocks and executor (engine/echo.py), for the tests."""
from engine.echo import CERT_KEY_MARK, KEY_MARK, TOKEN_MARK, EchoExecutor, EchoMocks

__all__ = ["CERT_KEY_MARK", "KEY_MARK", "TOKEN_MARK", "EchoExecutor", "EchoMocks"]
