"""A real `genforge serve` in a child process, for the tests that talk to it over TCP."""

from contextlib import contextmanager

import pytest

from genforge.deploy.loadtest import serve_process


@contextmanager
def running_server(models: list[str], *options: str, **kwargs):
    with serve_process(models, *options, **kwargs) as (url, _):
        yield url


@pytest.fixture(scope="session")
def live_server():
    """`with live_server(["isrnet-x2"], "--queue", "16") as url: ...` (see serve_process)."""
    return running_server
