"""Build a CLIP with RANDOM weights and a locally built tokenizer, saved with save_pretrained.

No pretrained weights can be downloaded on the build machines, so tests,
benchmarks and the plumbing demo use a model made here. Its folder carries a
``model_card.json`` with ``"weights": "random"`` and the encoder warns loudly
whenever it loads one. Shapes: ``tiny`` (tests), ``small`` (the starting point
of ``training.trainer`` on a 2-core CPU) and ``vit-b-32`` (the ViT-B/32 compute
shape, for throughput benchmarks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from fashion_catalog.encoders.model_card import write_model_card

SHAPES = ("tiny", "small", "vit-b-32")


def _byte_vocab() -> dict[str, int]:
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def _word_merges(corpus: Iterable[str], max_words: int, min_count: int) -> list[tuple[str, str]]:
    """BPE merges that assemble each frequent corpus word into one token, left to right."""
    import re
    from collections import Counter

    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    byte_map = bytes_to_unicode()
    # CLIP's pre-tokenisation (letters runs, single digits, punctuation runs), ASCII-simplified.
    pattern = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")
    counts = Counter(w for text in corpus for w in pattern.findall(text.lower()))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word, n in counts.most_common(max_words):
        if n < min_count or len(word) < 2:
            continue
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        left = symbols[0]
        for right in symbols[1:]:
            pair = (left, right)
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            left = left + right
    return merges


def build_tokenizer(out_dir: str | os.PathLike[str], corpus: Iterable[str] | None = None,
                    max_words: int = 4000, min_count: int = 2):
    """A CLIP BPE tokenizer built here: byte-level, plus merges for the corpus's frequent words.

    Without a corpus every byte is a token; with one (e.g. the catalog's descriptions),
    frequent words become single tokens, so token counts look like a real CLIP's.
    """
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = _byte_vocab()
    merges = _word_merges(corpus, max_words, min_count) if corpus is not None else []
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    # Special tokens last, as CLIP has them.
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.pop(special, None)
        vocab[special] = len(vocab)
    vocab = {tok: i for i, tok in enumerate(vocab)}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))


RANDOM = "random"  # model_card.json "weights" of a model that will serve as is: the encoder warns
RANDOM_INIT = "random-init"  # the start of a training run: about to be trained, no warning


def build_random_clip(out_dir: str | os.PathLike[str], shape: str = "tiny", seed: int = 0,
                      corpus: Iterable[str] | None = None, training_start: bool = False) -> str:
    """Create and save a random-weights CLIP of the given shape; returns the folder.

    ``corpus`` (texts) gives the tokenizer word merges (see :func:`build_tokenizer`). ``training_start``
    marks the folder as the starting point of a training run (weights ``random-init``): loading it is
    expected and does not raise the random-weights warning meant for models that serve searches.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    import tempfile

    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(tmp, corpus)
    vocab_size = len(tokenizer)
    if shape == "tiny":
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=128)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8)
    elif shape == "small":  # ~4M parameters: trains at ~200 pairs/s on 2 CPU cores (bf16)
        text = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
                    max_position_embeddings=64)
        vision = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
                      image_size=64, patch_size=8)
    else:  # the openai/clip-vit-base-patch32 architecture
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                    max_position_embeddings=77)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32)
    text.update(vocab_size=vocab_size, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                pad_token_id=vocab_size - 1)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    size = vision["image_size"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    card = {
        "weights": RANDOM_INIT if training_start else RANDOM,
        "shape": shape,
        "seed": seed,
        "note": "Random weights built locally by encoders.random_clip: for tests, benchmarks and plumbing demos only.",
    }
    write_model_card(out, card)
    return str(out)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--shape", choices=SHAPES, default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build_random_clip(args.out_dir, args.shape, args.seed))
