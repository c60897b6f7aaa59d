import os

# (importing hyre_engine sets the model-hub offline flags)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The tests train tiny models, which gain nothing from threads; on a shared,
    # oversubscribed CPU torch's spinning worker threads make them ~10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
