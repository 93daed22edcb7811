"""Parity tests against the original Jukebox code (the test-only ``jukebox-infer`` package).

Makes the reference harness importable as ``import reference_vqvae`` from tests in this folder (and
regardless of pytest's import mode); ``bench/vqvae.py`` puts this folder on ``sys.path`` the same way.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
