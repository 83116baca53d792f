import os

# Everything runs offline: never let a library try a hub download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest


@pytest.fixture(autouse=True)
def _isolate_ground_truth_registrations():
    """``data.ground_truth.register_ground_truth_file`` is process-global (it lets a table written
    at run time replace a shipped group); a test that registers one must not change what later tests
    load, so every test starts and ends with the registrations it found."""
    from data import ground_truth

    saved = dict(ground_truth._REGISTERED)
    yield
    ground_truth._REGISTERED.clear()
    ground_truth._REGISTERED.update(saved)
