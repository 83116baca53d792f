"""Cell claims (finetuning.claims): two runs sharing a partial-results file never train one cell twice."""
import json
import os
import subprocess
import sys
import time

import pytest

from finetuning import FinetuneConfig, run_benchmark
from finetuning.claims import CellClaims
from finetuning.results import ResultsStore

from test_finetune import FAST, CountingFactory, colour_getter


HOLD = ("import sys, time\nsys.path.insert(0, sys.argv[1])\nfrom finetuning.claims import CellClaims\n"
        "with CellClaims(sys.argv[2], heartbeat_s=0.2, stale_after_s=30).claim('tiny_a', 'colours') as mine:\n"
        "    print('mine' if mine else 'held', flush=True)\n    time.sleep(60)\n")


def test_a_claim_is_exclusive_between_processes_and_goes_stale_with_its_holder(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    partial = tmp_path / "p.partial.json"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, root, str(partial)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mine"
        claims = CellClaims(partial, heartbeat_s=0.2, stale_after_s=30)
        assert claims.holder("tiny_a", "colours")["pid"] == proc.pid
        assert [(m, d, c["pid"]) for m, d, c in claims.live()] == [("tiny_a", "colours", proc.pid)]
        with claims.claim("tiny_a", "colours") as mine:
            assert not mine                                        # held by the live process
        with claims.claim("tiny_b", "colours") as mine:            # another cell is free
            assert mine and claims.holder("tiny_b", "colours")["pid"] == os.getpid()
        assert claims.holder("tiny_b", "colours") is None          # released on exit
        m0 = claims.path("tiny_a", "colours").stat().st_mtime
        time.sleep(0.6)
        assert claims.path("tiny_a", "colours").stat().st_mtime > m0   # the holder's heartbeat
    finally:
        proc.kill()
        proc.wait()
    # a killed holder (same host, no such pid) leaves a stale claim that is taken over
    assert claims.path("tiny_a", "colours").exists() and claims.holder("tiny_a", "colours") is None
    assert claims.live() == []
    with claims.claim("tiny_a", "colours") as mine:
        assert mine
    assert not claims.path("tiny_a", "colours").exists()


def test_a_claim_of_another_host_holds_until_its_heartbeat_is_old(tmp_path):
    claims = CellClaims(tmp_path / "p.partial.json", heartbeat_s=1, stale_after_s=5)
    path = claims.path("m", "d")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "x"}))
    with claims.claim("m", "d") as mine:
        assert not mine
    old = time.time() - 60
    os.utime(path, (old, old))
    with claims.claim("m", "d") as mine:
        assert mine
    path.parent.joinpath("n.claim").write_text("{not json")           # half-written: stale
    with claims.claim("n", "d") as mine:
        assert mine
    with pytest.raises(ValueError, match="heartbeat"):
        CellClaims(tmp_path / "p", heartbeat_s=5, stale_after_s=5)


def test_run_benchmark_skips_a_cell_another_run_holds_and_the_last_run_writes_the_table(tmp_path, capsys):
    cfg = FinetuneConfig(lrs=(1e-2,), **FAST)
    out, partial = tmp_path / "t.json", tmp_path / "t.partial.json"
    other = CountingFactory()
    with CellClaims(partial).claim("tiny_a", "colours") as mine:       # "another run" trains tiny_a
        assert mine
        assert run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, out, partial, model_factory=other,
                             dataset_getter=colour_getter, progress=False) is None
        assert other.calls == ["tiny_b"] and not out.exists()
        assert "1 cell(s) are being trained by other runs" in capsys.readouterr().out
        assert ResultsStore(partial, cfg).has("tiny_b", "colours")
    last = CountingFactory()
    table = run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, out, partial, model_factory=last,
                          dataset_getter=colour_getter, progress=False)
    assert last.calls == ["tiny_a"] and set(table["offline_zoo"]["colours"]) == {"tiny_a", "tiny_b"}
    assert not list((tmp_path / "t.partial.json.claims").rglob("*.claim"))
