"""Real HTTP on loopback: the fake SendGrid (validating bodies against the project's own
schema of the Mail Send fields nurture sends) and the nurture app served by uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time

import pytest

# the project's own schema of the fields nurture sends (shipped with the package), so these
# tests run anywhere; tests/unit/test_sendgrid_contract.py checks against SendGrid's official one
from nurture.devtools.fake_sendgrid import OWN_SCHEMA


@pytest.fixture
def fake_sendgrid():
    from nurture.devtools.fake_sendgrid import FakeSendGrid

    with FakeSendGrid(schema_path=OWN_SCHEMA) as fake:
        yield fake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedApp:
    def __init__(self, asgi) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve():
    """serve(app) -> a running server on loopback, stopped after the test."""
    started: list[ServedApp] = []

    def _serve(asgi) -> ServedApp:
        s = ServedApp(asgi).__enter__()
        started.append(s)
        return s

    yield _serve
    for s in started:
        s.__exit__(None, None, None)
