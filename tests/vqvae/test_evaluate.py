"""`vqvae eval`: per-level spectral convergence and codebook usage, as a table and JSON."""

import json
import math

from openjukebox.cli import main


def test_eval_table_and_json(tmp_path, tones_dir, tiny_vqvae_dir, capsys):
    out = tmp_path / "eval.json"
    argv = ["vqvae", "eval", "--data", str(tones_dir), "--vqvae", str(tiny_vqvae_dir), "--seconds", "4"]
    assert main([*argv, "--crop-seconds", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "spec. conv. (dB)" in table and "entropy (bits)" in table
    result = json.loads(out.read_text())
    assert result["crops"] == 4 and result["l_bins"] == 64
    assert [r["level"] for r in result["levels"]] == [0, 1, 2]
    for r in result["levels"]:
        assert math.isfinite(r["spectral_convergence_db"])
        assert 1 <= r["codes_used"] <= 64 and r["usage"] == r["codes_used"] / 64
        assert 0 <= r["entropy_bits"] <= math.log2(r["codes_used"]) + 1e-9
    # deterministic in the seed
    assert main([*argv, "--crop-seconds", "1", "--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text()) == result
