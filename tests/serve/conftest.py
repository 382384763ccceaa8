"""Fixtures of the kestrel serve tests: a server process per model on a free loopback port."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

MODELS_DIR = os.environ.get("KESTREL_MODELS_DIR", os.path.join(os.path.dirname(__file__), "../../../shared/models"))
KESTREL = os.environ.get("KESTREL_CLI", "kestrel")


def pytest_configure(config):
    try:
        import openai  # noqa: F401
    except ImportError:
        pytest.exit("SKIP: the openai package is missing (run scripts/setup_python.sh)", returncode=77)


class Server:
    def __init__(self, model, *extra):
        if not os.path.isfile(model):
            pytest.skip(f"model not found: {model}")
        self.model_id = os.path.basename(model)[: -len(".gguf")]
        self.proc = subprocess.Popen(
            [KESTREL, "serve", "-m", model, "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"kestrel serve did not start: {line!r} {self.proc.stderr.read()}")
        self.base = line.split("listening on ")[1].split()[0]
        self.url = self.base + "/v1"

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()

    def metrics(self):
        values = {}
        for line in self.get("/metrics")[2].splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        err = self.proc.stderr.read()
        assert rc == 0, f"kestrel serve exited {rc}: {err}"


@pytest.fixture(scope="module")
def stories():
    s = Server(os.path.join(MODELS_DIR, "stories260K.gguf"), "--device", "cpu", "--max-concurrency", "16")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def long_context():
    # 4096-token context and a tiny model on the slow reference device (about 100 tokens/s here):
    # requests long enough to disconnect in the middle of.
    s = Server(os.path.join(MODELS_DIR, "llama-2-tiny-random.gguf"), "--device", "ref", "--max-concurrency", "4")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def smollm2():
    # A real chat model with a template (ChatML), from scripts/fetch_models.sh.
    cache = os.environ.get("KESTREL_MODEL_CACHE") or os.path.expanduser("~/.cache/kestrel/models")
    path = os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        if os.environ.get("KESTREL_REQUIRE_MODELS") == "1":
            pytest.fail(f"model missing (KESTREL_REQUIRE_MODELS=1): {path}")
        pytest.skip(f"model not found: {path} (scripts/fetch_models.sh)")
    s = Server(path, "--device", "cpu", "--max-concurrency", "2", "--ctx", "512")
    s.path = path
    yield s
    s.stop()


@pytest.fixture(scope="module")
def golden():
    with open(os.path.join(MODELS_DIR, "stories260K.golden.json")) as f:
        return json.load(f)["cases"]
