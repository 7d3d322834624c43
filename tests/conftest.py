import os

import numpy as np
import pytest

os.environ.setdefault("GRAPHC_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "graphc"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
