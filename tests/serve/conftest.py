"""Tiny checkpoints of each kind the server handles, and a real server on a free loopback port."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import uvicorn

from genloom.serve import ServeSettings, create_app, load_named
from tests.conftest import train_tiny


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, trained_run, trained_gpt, lowercased_copier) -> dict[str, Path]:
    """name → checkpoint: an RNN LM, a GPT with a 48-token context, a BERT, and a seq2seq."""
    root = tmp_path_factory.mktemp("served")
    return {
        "rnn": trained_run,
        "gpt": trained_gpt,
        "bert": train_tiny(root / "bert", "bert", {"dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32,
                                               "context_length": 48}),
        "copier": lowercased_copier,
    }


@pytest.fixture(scope="session")
def models(checkpoints):
    return load_named([f"{name}={path}" for name, path in checkpoints.items()], device="cpu")


class LiveServer:
    """uvicorn in a thread, on a port the OS picks, for clients that need a real socket (disconnects, the openai
    package, a browser)."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live(models):
    def start(**settings) -> LiveServer:
        return LiveServer(create_app(models, ServeSettings(**settings)))
    return start
