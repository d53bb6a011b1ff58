"""Fixtures: a mock model server per module, a fresh apache2 per test, and
after every test a look at the error log for anything unexpected."""
import os

import pytest

import harness


def pytest_configure(config):
    if not os.path.exists(harness.MODULE):
        raise pytest.UsageError("%s is not built: run make first" % harness.MODULE)


@pytest.fixture(scope="module")
def backend():
    mock = harness.MockBackend("primary")
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def backend2():
    mock = harness.MockBackend("secondary")
    yield mock
    mock.stop()


@pytest.fixture
def gateways(tmp_path):
    """Makes Gateway objects; stops them and checks their error logs."""
    made = []

    def make(name="gw", backend_port=None, mpm="event"):
        gw = harness.Gateway(tmp_path / name, backend_port=backend_port, mpm=mpm)
        made.append(gw)
        return gw

    yield make
    problems = []
    for gw in made:
        gw.stop()
        problems += gw.unexpected_errors()
    assert not problems, "unexpected lines in error.log:\n" + "\n".join(problems)


@pytest.fixture
def quickstart(gateways, backend):
    """conf-examples/quickstart.conf in front of the mock backend."""
    backend.reset()
    gw = gateways("quickstart", backend_port=backend.port)
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "quickstart.conf"))
    return gw.start()
