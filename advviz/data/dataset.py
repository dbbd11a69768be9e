"""One split of a data set (:class:`TextDataset`) and its seeded subsets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


SPLITS = ("train", "dev", "test")


@dataclass
class TextDataset:
    """One split: parallel lists of texts and integer labels."""

    name: str
    split: str
    texts: list[str]
    labels: list[int]
    label_names: list[str]
    source: str = ""  # where it was read from
    split_info: dict = field(default_factory=dict)  # how a derived split was made
    skipped_empty: int = 0
    label_mapping: dict | None = None  # string label -> id, when the file had string labels

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, n: int | None, seed: int = 0) -> "TextDataset":
        """The first ``n`` examples of a seeded permutation (all of them when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        idx = subset_indices(len(self), n, seed)
        return TextDataset(self.name, self.split, [self.texts[i] for i in idx],
                           [self.labels[i] for i in idx], self.label_names, self.source,
                           {**self.split_info, "subset": {"n": n, "seed": seed}},
                           self.skipped_empty, self.label_mapping)


def subset_indices(total: int, n: int | None, seed: int = 0) -> list[int]:
    """The indices :meth:`TextDataset.subset` keeps, in its order (all, in order, when n is None or
    >= total)."""
    if n is None or n >= total:
        return list(range(total))
    return [int(i) for i in np.random.default_rng(seed).permutation(total)[:n]]
