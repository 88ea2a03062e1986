

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
