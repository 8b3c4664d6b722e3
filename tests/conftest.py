import os
import sys
from pathlib import Path

import pytest
import torch

# Two cores on CI; several pytest workers or a benchmark beside us would thrash with more threads.
torch.set_num_threads(int(os.environ.get("SECATEURS_TEST_THREADS", "1")))

TESTS = Path(__file__).parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
