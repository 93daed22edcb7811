"""Counter-based seeding: the random state of a training step is a pure function of (seed, step, rank).

At the start of every optimizer step the engine re-seeds the global RNGs that model code may use (torch CPU
and CUDA, Python `random`, NumPy's legacy global state) from a hash of (seed, step, rank). A resumed run
therefore draws exactly the numbers an uninterrupted run draws, with no RNG state to save or restore; ranks
get independent streams (dropout differs across ranks; values that must agree, such as codebook restarts,
are broadcast by the model); and logging, media sampling or data prefetch between steps cannot perturb
training.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed for (seed, step, rank); nearby inputs give unrelated seeds."""
    digest = hashlib.blake2b(f"openjukebox:{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seed every global RNG for optimizer step `step` on `rank`."""
    s = step_seed(seed, step, rank)
    torch.manual_seed(s)  # also every CUDA device
    random.seed(s)
    np.random.seed(s % 2**32)
