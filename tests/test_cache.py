import numpy as np
import pytest

from data.cache import CacheLayout, CacheMissingError, atomic_save_npy


def test_atomic_save_roundtrip_and_no_temp_left(tmp_path):
    layout = CacheLayout(tmp_path)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_save_npy(layout.features("ds", "m"), x)
    np.testing.assert_array_equal(layout.load_features("ds", "m"), x)
    assert [p.name for p in (tmp_path / "features" / "ds").iterdir()] == ["m.npy"]


def test_missing_cache_names_the_path(tmp_path):
    layout = CacheLayout(tmp_path)
    with pytest.raises(CacheMissingError, match="features/ds/resnet50.npy"):
        layout.load_features("ds", "resnet50")


def test_atomic_files_get_normal_permissions(tmp_path):
    import os
    import stat

    path = atomic_save_npy(tmp_path / "a.npy", np.zeros(3))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_save_entry_writes_data_then_a_record_with_its_hash(tmp_path):
    import hashlib

    from data.cache import check_entry, read_record, record_path, save_entry

    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    made_from = {"dataset": {"fingerprint": "f1", "n": 3, "method": "items"}, "model": {"name": "m", "input_hw": (8, 8)}}
    path = save_entry(tmp_path / "features" / "ds" / "m.npy", x, made_from)
    rec = read_record(path)
    assert record_path(path).name == "m.npy.record.json"
    assert rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and rec["bytes"] == path.stat().st_size
    assert rec["shape"] == [3, 4] and rec["made_from"]["model"]["input_hw"] == [8, 8]     # JSON-normalised
    assert check_entry(path, made_from).valid
    assert check_entry(tmp_path / "absent.npy", made_from) == type(check_entry(path, made_from))(False, None)
    # the reason names the field that differs
    other = {**made_from, "dataset": {"fingerprint": "f2", "n": 5, "method": "items"}}
    assert check_entry(path, other).reason == "made from different data (3 items, now 5)"
    same_n = {**made_from, "dataset": {"fingerprint": "f2", "n": 3, "method": "items"}}
    assert "same number of items, 3, different content" in check_entry(path, same_n).reason
    new_model = {**made_from, "model": {"name": "m", "input_hw": [16, 16]}}
    assert check_entry(path, new_model).reason == "made with a different model.input_hw ([8, 8], now [16, 16])"
    atomic_save_npy(tmp_path / "legacy.npy", x)
    assert "no provenance record" in check_entry(tmp_path / "legacy.npy", made_from).reason


def test_entry_lock_is_exclusive_between_processes(tmp_path):
    import subprocess
    import sys

    from data.cache import entry_lock

    target = tmp_path / "x.npy"
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
            "except BlockingIOError:\n    print('held')\n")
    lock_file = str(tmp_path / ".x.npy.lock")
    with entry_lock(target):
        out = subprocess.run([sys.executable, "-c", code, lock_file], capture_output=True, text=True).stdout
    assert out.strip() == "held"
    out = subprocess.run([sys.executable, "-c", code, lock_file], capture_output=True, text=True).stdout
    assert out.strip() == "free"


def test_cached_array_reuses_only_what_matches_its_record(tmp_path):
    from data.cache import cached_array
    path, calls, notes = tmp_path / "a" / "x.npy", [], []

    def compute(v):
        return lambda: calls.append(v) or np.full(3, v, dtype=np.float32)

    assert cached_array(path, {"m": 1}, compute(1.0), log=notes.append).tolist() == [1, 1, 1]
    assert cached_array(path, {"m": 1}, compute(2.0), log=notes.append).tolist() == [1, 1, 1]   # reused
    assert calls == [1.0] and notes == []
    assert cached_array(path, {"m": 2}, compute(3.0), log=notes.append).tolist() == [3, 3, 3]   # other input
    assert calls == [1.0, 3.0] and len(notes) == 1 and "made with a different m (1, now 2)" in notes[0]
    path.write_bytes(path.read_bytes()[:-4])                                                   # damaged
    assert cached_array(path, {"m": 2}, compute(4.0), log=notes.append).tolist() == [4, 4, 4]
    assert "corrupt" in notes[-1]
