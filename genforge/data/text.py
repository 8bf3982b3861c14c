"""Text corpora for the text-generation family, as bytes (byte-level tokens: a vocabulary of 256 that
holds every UTF-8 text, so nothing is downloaded and no prompt is ever out of vocabulary).

    pydoc       the Python reference text that ships inside CPython (pydoc_data.topics: 79 topics, ~465 KB
                of English prose and grammar); holdout = every tenth topic by sorted name (8 topics, 36 KB),
                so the model is scored on sections it never saw, not on the ends of ones it did. Topics
                repeat each other (customization and attribute-access are also inside specialnames): 79%
                of the holdout's 50-byte strings were in the other topics, so every training paragraph
                that is also a holdout paragraph is dropped (29 KB), which leaves 0.6%
    text:PATH   a UTF-8 file, or a folder of .txt / .md / .rst / .py files (recursive, sorted); holdout =
                the last 10% of every file (cut at a line break)

``TokenBatches.batch(step)`` is a pure function of (seed, step, rank), like every other family's batches,
so resumed runs see the same data. Bits per character are bits per byte times bytes per character of the
text scored (``bits_per_char``): the two differ only where the text leaves ASCII.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genforge.data.patches import step_generator
from genforge.errors import UserError

PREFIX = "text:"
SUFFIXES = (".txt", ".md", ".rst", ".py", ".text")
HOLDOUT_EVERY = 10  # pydoc: topic i of the sorted names is held out when i % 10 == 5
MAX_FILE_BYTES = 64 << 20  # a corpus lives in memory: refuse a single file over 64 MB, by name
SEPARATOR = "\n\n"


@dataclass
class Corpus:
    name: str
    train: bytes
    holdout: bytes
    holdout_chars: int  # characters of the holdout text (bits per character = bits / this)
    parts: int  # topics or files


def list_corpora() -> list[dict]:
    """What `genforge datasets` shows for text."""
    corpus = read_corpus("pydoc")
    return [{"name": "pydoc", "images": corpus.parts, "size": f"{len(corpus.train) + len(corpus.holdout):,} bytes",
             "channels": "text", "labels": False, "classes": 0, "splits": ["train", "holdout"],
             "description": "text: CPython's reference topics (pydoc_data), byte tokens; holdout: every tenth "
                            "topic"}]


def _pydoc() -> Corpus:
    from pydoc_data import topics

    names = sorted(topics.topics)
    held = [n for i, n in enumerate(names) if i % HOLDOUT_EVERY == HOLDOUT_EVERY // 2]
    holdout = SEPARATOR.join(topics.topics[n] for n in held)
    seen = {p.strip() for p in holdout.split(SEPARATOR) if p.strip()}
    train = [p for n in names if n not in held for p in topics.topics[n].split(SEPARATOR) if p.strip() not in seen]
    return Corpus("pydoc", SEPARATOR.join(train).encode(), holdout.encode(), len(holdout), len(names))


def _decode(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(f"text file '{path}' is {size / 2 ** 20:.0f} MB: the limit is {MAX_FILE_BYTES >> 20} MB "
                            "per file (split it)")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"text file '{path}' is not UTF-8 (byte {err.start}: {err.reason}); convert it first") from None
    except OSError as err:
        raise UserError(f"text file '{path}' cannot be read ({err.strerror or err})") from None


def _split(text: str) -> tuple[str, str]:
    """(first 90%, last 10%), cut at the line break nearest before the 90% mark when there is one."""
    cut = int(len(text) * 0.9)
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > len(text) * 0.5 else cut
    return text[:cut], text[cut:]


def _folder(spec: str) -> Corpus:
    path = Path(spec[len(PREFIX):]).expanduser()
    if not spec[len(PREFIX):]:
        raise UserError(f"dataset '{spec}' needs a path, e.g. text:/data/corpus.txt")
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise UserError(f"dataset '{spec}': no {', '.join(SUFFIXES)} files under '{path}'")
    else:
        raise UserError(f"dataset '{spec}': '{path}' does not exist")
    train, holdout = [], []
    for f in files:
        head, tail = _split(_decode(f))
        train.append(head)
        holdout.append(tail)
    train_text, holdout_text = SEPARATOR.join(train), SEPARATOR.join(holdout)
    if len(train_text.encode()) < 2 or not holdout_text.strip():
        raise UserError(f"dataset '{spec}' holds too little text (train {len(train_text)} and holdout "
                        f"{len(holdout_text)} characters): a corpus needs at least a few lines")
    return Corpus(spec, train_text.encode(), holdout_text.encode(), len(holdout_text), len(files))


def read_corpus(spec: str) -> Corpus:
    if spec == "pydoc":
        return _pydoc()
    if spec.startswith(PREFIX):
        return _folder(spec)
    raise UserError(f"unknown text dataset '{spec}' (valid: pydoc, text:PATH)")


def as_tokens(data: bytes) -> torch.Tensor:
    """Bytes -> int64 token ids 0..255."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


class TokenBatches:
    """Random windows of ``block + 1`` tokens: inputs are the first ``block``, targets the last."""

    host_side = True

    def __init__(self, tokens: torch.Tensor, *, block: int, batch_size: int, seed: int,
                 device=torch.device("cpu"), rank: int = 0):
        if len(tokens) < 2:
            raise UserError("the training text needs at least 2 bytes")
        self.tokens, self.batch_size, self.seed, self.rank = tokens, batch_size, seed, rank
        self.block = min(block, len(tokens) - 1)
        self.device = torch.device(device)

    def batch(self, step: int) -> dict:
        g = step_generator(self.seed, step, self.rank)
        starts = torch.randint(0, len(self.tokens) - self.block, (self.batch_size,), generator=g)
        rows = torch.stack([self.tokens[s:s + self.block + 1] for s in starts.tolist()])
        return {"x": rows[:, :-1].to(self.device), "y": rows[:, 1:].to(self.device)}


def holdout_windows(tokens: torch.Tensor, block: int, max_windows: int | None = None) -> list[torch.Tensor]:
    """The holdout cut into consecutive windows of ``block + 1`` tokens overlapping by one (every token
    but the first is predicted exactly once), evenly spread when ``max_windows`` caps their number."""
    starts = list(range(0, max(1, len(tokens) - 1), block))
    if max_windows is not None and len(starts) > max_windows:
        step = len(starts) / max_windows
        starts = [starts[int(i * step)] for i in range(max_windows)]
    return [tokens[s:s + block + 1] for s in starts if len(tokens[s:s + block + 1]) >= 2]
