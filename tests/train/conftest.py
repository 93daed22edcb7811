"""Shared fixtures for the training-engine tests."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # toy_task lives beside the tests
    sys.path.insert(0, str(HERE))
