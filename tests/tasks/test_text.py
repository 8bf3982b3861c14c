"""Text generation: corpora, CharGPT (cache equal to no cache, sampling rules), the n-gram baselines
against hand-computed cases, a few real training steps, the CLI, the API and the service route."""

import math
from pathlib import Path

import pytest
import torch

import genforge
from genforge.data.text import TokenBatches, as_tokens, holdout_windows, read_corpus
from genforge.errors import UserError
from genforge.metrics.ngram import KneserNey, baselines, unigram_bits
from genforge.models.chargpt import CharGPT, CharGPTConfig, generate_uncached, sample
from tests.conftest import random_folder, run_cli


def tiny_gpt(block=32, seed=0) -> CharGPT:
    torch.manual_seed(seed)
    return CharGPT(CharGPTConfig(block_size=block, layers=2, heads=2, width=16, dropout=0.0)).eval()


def test_pydoc_holdout_is_whole_topics_without_repeated_paragraphs():
    corpus = read_corpus("pydoc")
    assert corpus.parts == 79 and 30_000 < len(corpus.holdout) < 60_000 and len(corpus.train) > 300_000
    train = corpus.train
    held = [p for p in corpus.holdout.split(b"\n\n") if len(p.strip()) > 80]
    assert held and not any(p in train for p in held)  # no long holdout paragraph was trained on
    assert corpus.holdout_chars == len(corpus.holdout.decode())


def test_text_folder_splits_each_file_and_refuses_bad_input(tmp_path):
    (tmp_path / "a.txt").write_text("line one\n" * 30)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("x" * 10 + "\n" + "é" * 50)
    corpus = read_corpus(f"text:{tmp_path}")
    assert corpus.parts == 2 and corpus.holdout_chars < len(corpus.holdout)  # é is two bytes
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="bad.txt' is not UTF-8"):
        read_corpus(f"text:{tmp_path}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("")
    with pytest.raises(UserError, match="too little text"):
        read_corpus(f"text:{tmp_path / 'empty'}")
    for spec, match in (("text:", "needs a path"), ("text:/nowhere/x.txt", "does not exist"),
                        ("shakespeare", "unknown text dataset")):
        with pytest.raises(UserError, match=match):
            read_corpus(spec)


def test_batches_are_a_function_of_the_step_and_windows_cover_the_holdout():
    tokens = as_tokens(b"abcdefghij" * 20)
    a = TokenBatches(tokens, block=8, batch_size=3, seed=1).batch(5)
    b = TokenBatches(tokens, block=8, batch_size=3, seed=1).batch(5)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["x"][:, 1:], a["y"][:, :-1])
    windows = holdout_windows(tokens, 16)
    assert sum(len(w) - 1 for w in windows) == len(tokens) - 1  # every byte but the first predicted once
    assert len(holdout_windows(tokens, 16, max_windows=3)) == 3


def test_kv_cache_gives_the_uncached_logits_and_text():
    net = tiny_gpt()
    idx = torch.randint(0, 256, (2, 20))
    full = net(idx)
    cache = [[] for _ in net.blocks]
    parts = [net.forward_cached(idx[:, :7], cache, 0), net.forward_cached(idx[:, 7:8], cache, 7),
             net.forward_cached(idx[:, 8:], cache, 8)]
    assert (torch.cat(parts, dim=1) - full).abs().max() < 1e-5
    prompt = idx[:, :4]
    cached = net.generate(prompt, 20, generator=torch.Generator().manual_seed(3))  # within the context
    plain = net.generate(prompt, 20, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(cached, plain)
    assert net.generate(prompt, 70, generator=torch.Generator().manual_seed(3)).shape == (2, 74)  # slides


def test_sampling_rules():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert sample(logits, temperature=0).item() == 3
    g = torch.Generator().manual_seed(0)
    assert {sample(logits, top_k=2, generator=g).item() for _ in range(50)} == {2, 3}
    # top_p 0.5: token 3 alone has 0.64 of the mass, so it is the whole nucleus
    assert {sample(logits, top_p=0.5, generator=g).item() for _ in range(50)} == {3}
    out = generate_uncached(tiny_gpt(), torch.zeros(1, 1, dtype=torch.long), 5, 32, temperature=0)
    assert out.shape == (1, 6)


def test_ngram_baselines_against_hand_computed_cases():
    # unigram, add-one over 256 bytes: "aab" then "a" has probability (2 + 1) / (3 + 256)
    assert unigram_bits(b"aab", b"a") == pytest.approx(-math.log2(3 / 259))
    # order 1 Kneser-Ney on "abab": continuation... top order 1 uses raw counts: c(a) = c(b) = 2, n1 = 0,
    # n2 = 2 -> D = 0; P(a) = 2/4 exactly
    model = KneserNey(b"abab", 1)
    assert model.probability(b"", ord("a")) == pytest.approx(0.5)
    # order 2 on "abab": bigrams ab x2, ba x1 -> n1 = 1, n2 = 1, D2 = 1/3; context a: c = 2, one type;
    # lower order continuation counts: b preceded by {a}, a preceded by {b}: 1 each of 2 -> D1 from
    # n1 = 2, n2 = 0 -> 1; P1(b) = (1 - 1)/2 + 1 * 2/2 * 1/256
    model = KneserNey(b"abab", 2)
    p1 = 1 / 256
    expected = (2 - 1 / 3) / 2 + (1 / 3) * 1 / 2 * p1
    assert model.probability(b"a", ord("b")) == pytest.approx(expected)
    for context in (b"a", b"z", b""):  # a distribution whatever the context
        assert sum(model.probability(context, b) for b in range(256)) == pytest.approx(1.0)
    text = b"the cat sat on the mat. " * 40
    scores = baselines(text, b"the cat sat on the mat.", 23, orders=(2, 3))
    assert scores["kn3"] < scores["kn2"] < scores["unigram"] and scores["best_ngram"] == "kn3"


def test_training_steps_lower_the_loss_and_the_model_generates(tmp_path):
    from genforge.train import train
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def f(x):\n    return x + 1\n\n" * 60)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""name: t
seed: 0
data: {{dataset: "text:{corpus}"}}
model: {{name: chargpt, block_size: 32, layers: 1, heads: 2, width: 32, dropout: 0.0}}
task: {{kind: text, val_windows: 2, optim: {{learning_rate: 0.003, betas: [0.9, 0.99], schedule: constant}}}}
train: {{steps: 40, batch_size: 8, threads: 1, log_every: 10, eval_every: 40, checkpoint_every: 40}}
""")
    run = train(str(cfg), [], run_dir=str(tmp_path / "run"), progress=False)
    import json
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    val = [r["bpc"] for r in rows if r.get("kind") == "val"]
    assert val[-1] < val[0] - 2  # from ~8 bits (uniform) well down on a repetitive text
    model = genforge.load(str(run), device="cpu")
    text = model.generate_text("def ", tokens=30, seed=0, temperature=0.5)
    assert isinstance(text, str) and len(text.encode("utf-8", "replace")) >= 10
    assert model.generate_text("def ", tokens=30, seed=0, temperature=0.5) == text  # seeded
    result = model.evaluate(["bpc", "ngram"])
    assert result["bpc"] < result["baseline_unigram"]
    for bad in ({"tokens": 0}, {"tokens": 10**6}, {"top_k": 0}, {"temperature": -1}):
        with pytest.raises(UserError):
            model.generate_text("x", **{"tokens": 5, **bad})


def test_cli_and_service(tmp_path):
    folder = random_folder(tmp_path, "text", "chargpt")
    out = tmp_path / "t.txt"
    r = run_cli("generate-text", folder, "--prompt", "A class", "--tokens", "12", "--top-k", "40", "-o", out)
    assert r.returncode == 0 and out.read_bytes().startswith(b"A class"), r.stderr
    r = run_cli("generate-text", folder, "--tokens", "99999")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--tokens" in r.stderr
    from fastapi.testclient import TestClient

    from genforge.deploy.serve import create_app
    client = TestClient(create_app([str(folder)]))
    name = client.get("/v1/models").json()["models"][0]["name"]
    r = client.post("/v1/generate-text", json={"model": name, "prompt": "def ", "tokens": 8, "seed": 1})
    assert r.status_code == 200 and r.json()["prompt"] == "def " and isinstance(r.json()["text"], str)
    assert client.post("/v1/generate-text", json={"model": name, "tokens": 100000}).status_code == 422
    assert client.post("/v1/generate-text", json={"model": name, "prompt": "x" * 10000}).status_code == 422


def test_the_shipped_model_continues_a_prompt_offline():
    model = genforge.load("chargpt-pydoc", device="cpu")
    text = model.generate_text("def ", tokens=60, seed=0)
    assert text == model.generate_text("def ", tokens=60, seed=0) and len(text) > 20
    assert model.describe()["block_size"] == 128
    # beats the bigram-free unigram by far on a window of the holdout (the card has the whole holdout)
    corpus = read_corpus("pydoc")
    from genforge.metrics.ngram import window_bits
    window = as_tokens(corpus.holdout[:129])
    with torch.no_grad():
        bits, n = window_bits(model.module, window)
    assert bits / n < 3.0
