"""Review text: tokenizer and vocabulary, built from the training split only."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # PAD must stay at index 0: the loss masks token 0
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # index -> word, SPECIALS first

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 2000, min_count: int = 2) -> Vocabulary:
        counts = Counter(w for t in texts for w in tokenize(t))
        common = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        return cls(SPECIALS + tuple(common[: max(0, max_size - len(SPECIALS))]))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: Iterable[str], max_len: int) -> np.ndarray:
        """-> int32 [n, max_len + 2]: BOS, up to max_len words, EOS, then PAD. An empty text is all PAD
        (no review: nothing to learn from)."""
        index = {w: i for i, w in enumerate(self.words)}
        rows = []
        for text in texts:
            ids = [index.get(w, 3) for w in tokenize(text)[:max_len]]
            row = [1, *ids, 2] if ids else []
            rows.append(row + [0] * (max_len + 2 - len(row)))
        return np.array(rows, dtype=np.int32).reshape(-1, max_len + 2)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(list(self.words)))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(tuple(json.loads(path.read_text())))
