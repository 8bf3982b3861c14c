"""Bits of text under a model (``window_bits``: what training validation and `genforge eval` score)
and the baselines for text models, over the same byte tokens: a unigram model and interpolated
Kneser-Ney n-gram models (Kneser and Ney 1995; the interpolated form of Chen and Goodman 1998), scored
as total bits on a held-out text.

Interpolated Kneser-Ney of order N, for a byte w after the context h (the previous N-1 bytes):

    P_n(w | h) = max(c_n(h w) - D_n, 0) / c_n(h) + D_n * T_n(h) / c_n(h) * P_{n-1}(w | h minus its first byte)

where c_N are the raw counts of the top order and c_n (n < N) continuation counts (the number of distinct
bytes seen before h w), c_n(h) = the sum of c_n(h x) over x, T_n(h) = the number of distinct x with
c_n(h x) > 0, and D_n = n1 / (n1 + 2 n2) from the numbers of n-grams counted once and twice. A context
never seen passes the lower order's estimate through; below order 1 is the uniform 1/256, so every byte
has a probability. ``unigram_bits`` is add-one smoothed byte frequencies.

And what generated text is scored on besides its bits (``sample_scores``, over whitespace-separated words):
the n-gram overlap with held-out text (the share of the samples' n-grams, every occurrence counted, that
occur somewhere in the holdout: BLEU's n-gram precision without clipping, a whole corpus as the reference)
and distinct-n (Li et al. 2016: distinct n-grams over all n-grams of the samples together; low when a model
repeats itself). Neither is meaningful alone: compare them with real text of the same amount.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

VOCAB = 256


def window_bits(forward, window) -> tuple[float, int]:
    """(total bits, tokens predicted) of one window of tokens under ``forward`` (token ids (1, T) ->
    logits (1, T, 256), a module or an ONNX runner): every token after the first, given those before it."""
    import torch.nn.functional as F
    logits = forward(window[None, :-1])
    nats = F.cross_entropy(logits[0].float(), window[1:], reduction="sum")
    return float(nats) / math.log(2), len(window) - 1


def unigram_bits(train: bytes, holdout: bytes) -> float:
    counts = Counter(train)
    total = len(train) + VOCAB
    return -sum(math.log2((counts[b] + 1) / total) for b in holdout)


class KneserNey:
    def __init__(self, train: bytes, order: int):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order = order
        raw = Counter(train[i:i + order] for i in range(len(train) - order + 1))
        self.tables: dict[int, dict[bytes, int]] = {order: raw}
        for n in range(order - 1, 0, -1):  # continuation counts: distinct left extensions of each n-gram
            cont: dict[bytes, int] = defaultdict(int)
            for gram in self.tables[n + 1]:
                cont[gram[1:]] += 1
            self.tables[n] = cont
        self.totals, self.types, self.discounts = {}, {}, {}
        for n, table in self.tables.items():
            totals: dict[bytes, int] = defaultdict(int)
            types: dict[bytes, int] = defaultdict(int)
            for gram, c in table.items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            n1 = sum(1 for c in table.values() if c == 1)
            n2 = sum(1 for c in table.values() if c == 2)
            self.totals[n], self.types[n] = dict(totals), dict(types)
            self.discounts[n] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5

    def probability(self, context: bytes, byte: int) -> float:
        p = 1.0 / VOCAB
        w = bytes([byte])
        for n in range(1, self.order + 1):
            if len(context) < n - 1:
                break
            h = context[len(context) - (n - 1):] if n > 1 else b""
            total = self.totals[n].get(h, 0)
            if total == 0:
                continue
            d = self.discounts[n]
            p = max(self.tables[n].get(h + w, 0) - d, 0) / total + d * self.types[n][h] / total * p
        return p

    def bits(self, holdout: bytes) -> float:
        """Total bits of the holdout, each byte given the (up to order - 1) bytes before it."""
        k = self.order - 1
        return -sum(math.log2(self.probability(holdout[max(0, i - k):i], b)) for i, b in enumerate(holdout))


def baselines(train: bytes, holdout: bytes, holdout_chars: int, orders=(3, 4, 5, 6, 7)) -> dict:
    """Bits per character of the unigram and each Kneser-Ney order on the holdout, and the best order."""
    out = {"unigram": unigram_bits(train, holdout) / holdout_chars}
    for order in orders:
        out[f"kn{order}"] = KneserNey(train, order).bits(holdout) / holdout_chars
    best = min(orders, key=lambda o: out[f"kn{o}"])
    out["best_ngram"] = f"kn{best}"
    return out


def ngrams(tokens, n: int) -> list[tuple]:
    """The n-grams of a sequence (bytes, a list of words), in order, as tuples."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def ngram_overlap(samples, reference, n: int) -> float:
    """The share of the n-grams of the samples (sequences) that occur in the reference sequence; 0 without any."""
    known = set(ngrams(reference, n))
    grams = [g for s in samples for g in ngrams(s, n)]
    return sum(g in known for g in grams) / len(grams) if grams else 0.0


def distinct_n(samples, n: int) -> float:
    """Distinct n-grams over all n-grams of the samples together; 0 without any."""
    grams = [g for s in samples for g in ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sample_scores(samples: list[bytes], reference: bytes, orders=(1, 2, 3, 4)) -> dict[str, float]:
    """overlapN and distinctN (N in orders) of the samples' words (split at whitespace) against the reference text."""
    words, ref = [s.split() for s in samples], reference.split()
    out = {f"overlap{n}": ngram_overlap(words, ref, n) for n in orders}
    out.update({f"distinct{n}": distinct_n(words, n) for n in orders})
    return out
