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
