"""Batches for a DataLoader from any source whose `batch(seed, index, batch_size)` is a pure function.

`AudioFolder` (unlabelled crops) and `SongCrops` (labelled crops) both draw batch `index` from an RNG seeded
with (seed, index), so batches can be prefetched by worker processes in any order and a run resumed at batch
`s` is just `start_index=s`.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch.utils.data import Dataset


class BatchSource(Protocol):
    def batch(self, seed: int, index: int, batch_size: int) -> Any: ...


class SeededBatches(Dataset):
    """Item i is `source.batch(seed, start_index + i, batch_size)`, for i < length.

    Use `DataLoader(SeededBatches(...), batch_size=None, num_workers=k)`: items are whole batches.
    """

    def __init__(self, source: BatchSource, seed: int, batch_size: int, start_index: int = 0, *, length: int) -> None:
        if start_index < 0 or length < 0:
            raise ValueError(f"need start_index >= 0 and length >= 0; got {start_index}, {length}")
        self.source, self.seed, self.batch_size = source, seed, batch_size
        self.start_index, self.length = start_index, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.length:
            raise IndexError(f"batch {i} out of range for {self.length} batches")
        return self.source.batch(self.seed, self.start_index + i, self.batch_size)
