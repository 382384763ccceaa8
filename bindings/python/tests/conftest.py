import json
import os

import pytest

MODELS_DIR = os.environ.get("KESTREL_MODELS_DIR",
                            os.path.join(os.path.dirname(__file__), "../../../../shared/models"))
STORIES = os.path.join(MODELS_DIR, "stories260K.gguf")


@pytest.fixture(scope="session")
def kestrel():
    import kestrel as k
    return k


@pytest.fixture(scope="session")
def runtime(kestrel):
    return kestrel.Runtime()


@pytest.fixture(scope="session")
def model(runtime):
    if not os.path.isfile(STORIES):
        pytest.skip(f"model not found: {STORIES}")
    return runtime.load_model(STORIES, device="ref")


@pytest.fixture(scope="session")
def golden():
    with open(os.path.join(MODELS_DIR, "stories260K.golden.json")) as f:
        return json.load(f)["cases"]
