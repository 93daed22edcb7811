"""bench/sample.py end to end at its --quick shapes (the GPU session runs it on the released shapes with only
minutes of device time, so it must not be found broken there): every side, a lyric top prior, the hierarchy, the
JSON report written, and the same tokens as the original on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sample.py"


def test_quick_bench_runs_every_side_and_writes_its_report(import_script, tmp_path, monkeypatch):
    bench = import_script(BENCH, "bench_sample")
    monkeypatch.setattr(torch.cuda, "LongTensor", torch.LongTensor, raising=False)  # main sets it for the original
    out = tmp_path / "report.json"
    argv = ["--quick", "--cases", "tiny,1b_lyrics,hierarchy", "--batches", "1,2",
            "--sides", "reference,ours,ours-eager", "--json", str(out)]  # fmt: skip
    report = bench.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    rows = [(r["case"], r["batch"]) for r in report["decode"]]
    assert rows == [(c, b) for c in ("tiny", "1b_lyrics") for b in (1, 2)]
    for r in report["decode"]:
        assert r["identical_tokens"] is True  # fp32 on the CPU: ours and the original draw the same tokens
        sides = r["sides"]
        assert sides["ours-eager"]["identical_tokens"] is True
        for name in ("reference", "ours", "ours-eager"):
            assert sides[name]["error"] is None and sides[name]["tokens_per_s"] > 0
        assert sides["ours"]["ratio_vs_reference"] > 0
    assert report["hierarchy"]["identical_codes"] is True
    assert "ours with the eager loop" in bench.markdown(report)
