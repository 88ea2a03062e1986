"""yolo_triton.bench_serving.summarise against numbers worked out by hand (issue 21, item 8: the served
benchmark tests checked its figures only against each other, all computed by the function under test)."""
from __future__ import annotations

import pytest

from yolo_triton import bench_serving as bs

# (start, end, pre, server, post, round trips, images, detections) as _client_loop records them, seconds
RECORDS = [(0.0, 0.010, 0.002, 0.006, 0.002, 1, 2, 5),   # 10 ms
           (1.0, 1.030, 0.004, 0.020, 0.006, 1, 2, 3),   # 30 ms
           (2.0, 2.020, 0.003, 0.012, 0.005, 1, 2, 4)]   # 20 ms


def test_summarise_by_hand():
    got = bs.summarise(RECORDS, wall=0.5)
    assert got == {
        "calls": 3, "images": 6, "wall_s": 0.5,
        "images_per_s": 12.0, "calls_per_s": 6.0,  # 6 images, 3 calls in 0.5 s
        # latencies 10, 20, 30 ms; numpy's linear percentiles: p90 = 20 + 0.8 * 10, p99 = 20 + 0.98 * 10
        "latency_ms": {"p50": 20.0, "p90": 28.0, "p99": 29.8, "mean": 20.0, "max": 30.0},
        "split_ms": {"pre": 3.0, "server": 12.667, "post": 4.333},  # (2+4+3)/3, (6+20+12)/3, (2+6+5)/3
        "detections_per_image": 2.0,  # 12 detections over 6 images
    }


def test_summarise_of_no_calls():
    got = bs.summarise([], wall=1.0)
    assert (got["calls"], got["images"], got["images_per_s"], got["calls_per_s"]) == (0, 0, 0.0, 0.0)
    assert set(got["latency_ms"].values()) == {None} and set(got["split_ms"].values()) == {None}
    assert got["detections_per_image"] is None
    assert bs.summarise(RECORDS, wall=0.0)["images_per_s"] == pytest.approx(0.0)


# ---- an interrupted run: the JSON holds the finished cells, or is not there --------------------------
@pytest.fixture
def fake_run(monkeypatch):
    """bench_serving.main with the server parts stood in for (TEST DOUBLES): run_benchmark finishes
    ``cells`` cells (calling on_cell after each), then is interrupted."""
    import contextlib

    @contextlib.contextmanager
    def no_client(url, protocol):
        yield object()

    settings = bs.Settings(url="x:1", protocol="grpc", tracks=[], images=[], seconds=1.0)
    monkeypatch.setattr(bs, "open_client", no_client)
    monkeypatch.setattr(bs, "settings_from_args", lambda args, client: settings)

    def run(cells: int):
        def interrupted(settings, note="", on_cell=None):
            result = {"cells": []}
            for k in range(cells):
                result["cells"].append({"model": "m", "concurrency": k + 1})
                on_cell(result)
            raise KeyboardInterrupt
        monkeypatch.setattr(bs, "run_benchmark", interrupted)
    return run


def test_interrupted_before_any_cell_leaves_no_stale_json(tmp_path, fake_run, capsys):
    out = tmp_path / "bench"
    (tmp_path / "bench.json").write_text('{"cells": ["from an earlier run"]}')
    fake_run(0)
    assert bs.main(["--url", "x:1", "--model", "m", "--out", str(out), "--no-plot"]) == 130
    assert not (tmp_path / "bench.json").exists()
    err = capsys.readouterr().err
    assert "no cell finished" in err and "measured so far are in" not in err


def test_interrupted_after_cells_keeps_exactly_those(tmp_path, fake_run, capsys):
    import json

    out = tmp_path / "bench"
    (tmp_path / "bench.json").write_text('{"cells": ["from an earlier run"]}')
    fake_run(2)
    assert bs.main(["--url", "x:1", "--model", "m", "--out", str(out), "--no-plot"]) == 130
    assert [c["concurrency"] for c in json.loads((tmp_path / "bench.json").read_text())["cells"]] == [1, 2]
    assert "the 2 cells measured so far are in" in capsys.readouterr().err
