"""An independent oracle for the tests' CLIP vectors: CLIP's forward pass written again in numpy.

It reads the saved weights (``model.safetensors``) directly and computes the text and image features
the way the CLIP paper and Hugging Face's ``CLIPModel`` define them (pre-LN transformer blocks,
quick-GELU, causal text attention pooled at the end-of-text token, a class token for images, linear
projections), with none of the product's code: not its encoder, not its image decoding or
preprocessing (Pillow and ``CLIPImageProcessor`` prepare the pixels here). Where a test checks a
vector the product stored, it compares with this, so a bug in the product's encoder cannot also be
in the expected value.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-1.702 * x))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class ReferenceClip:
    """The CLIP of a ``save_pretrained`` folder, in numpy (float64 throughout)."""

    def __init__(self, folder: str):
        from safetensors.numpy import load_file

        self.w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
        self.text_config, self.vision_config = config["text_config"], config["vision_config"]
        from transformers import CLIPImageProcessor, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(folder)
        self.image_processor = CLIPImageProcessor.from_pretrained(folder)

    def _block(self, x: np.ndarray, prefix: str, heads: int, mask: np.ndarray | None, eps: float) -> np.ndarray:
        w = self.w
        h = _layer_norm(x, w[f"{prefix}.layer_norm1.weight"], w[f"{prefix}.layer_norm1.bias"], eps)
        n, d = h.shape
        head = d // heads

        def proj(name: str) -> np.ndarray:
            return h @ w[f"{prefix}.self_attn.{name}_proj.weight"].T + w[f"{prefix}.self_attn.{name}_proj.bias"]

        q = (proj("q") * head**-0.5).reshape(n, heads, head).transpose(1, 0, 2)
        k = proj("k").reshape(n, heads, head).transpose(1, 0, 2)
        v = proj("v").reshape(n, heads, head).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1)
        if mask is not None:
            scores = scores + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = (scores / scores.sum(-1, keepdims=True)) @ v
        out = attention.transpose(1, 0, 2).reshape(n, d)
        x = x + out @ w[f"{prefix}.self_attn.out_proj.weight"].T + w[f"{prefix}.self_attn.out_proj.bias"]
        h = _layer_norm(x, w[f"{prefix}.layer_norm2.weight"], w[f"{prefix}.layer_norm2.bias"], eps)
        h = _quick_gelu(h @ w[f"{prefix}.mlp.fc1.weight"].T + w[f"{prefix}.mlp.fc1.bias"])
        return x + h @ w[f"{prefix}.mlp.fc2.weight"].T + w[f"{prefix}.mlp.fc2.bias"]

    def text(self, texts: list[str]) -> np.ndarray:
        """Unit text vectors, one per text."""
        cfg, w = self.text_config, self.w
        eps = cfg.get("layer_norm_eps", 1e-5)
        out = []
        for text in texts:
            ids = self.tokenizer(text, truncation=True, max_length=cfg["max_position_embeddings"])["input_ids"]
            n = len(ids)
            x = w["text_model.embeddings.token_embedding.weight"][ids] + \
                w["text_model.embeddings.position_embedding.weight"][:n]
            causal = np.triu(np.full((n, n), -np.inf), k=1)
            for i in range(cfg["num_hidden_layers"]):
                x = self._block(x, f"text_model.encoder.layers.{i}", cfg["num_attention_heads"], causal, eps)
            x = _layer_norm(x, w["text_model.final_layer_norm.weight"], w["text_model.final_layer_norm.bias"], eps)
            end = ids.index(cfg["eos_token_id"])  # pooled at the first end-of-text token
            out.append(x[end] @ w["text_projection.weight"].T)
        return _unit(np.stack(out))

    def images(self, paths: list[str]) -> np.ndarray:
        """Unit image vectors of image files, one per path (decoded by Pillow, prepared by CLIPImageProcessor)."""
        cfg, w = self.vision_config, self.w
        eps = cfg.get("layer_norm_eps", 1e-5)
        p = cfg["patch_size"]
        out = []
        for path in paths:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
            pixels = self.image_processor(images=[rgb], return_tensors="np")["pixel_values"][0].astype(np.float64)
            c, height, width = pixels.shape
            patches = pixels.reshape(c, height // p, p, width // p, p).transpose(1, 3, 0, 2, 4).reshape(-1, c * p * p)
            kernel = w["vision_model.embeddings.patch_embedding.weight"].reshape(cfg["hidden_size"], -1)
            x = np.vstack([w["vision_model.embeddings.class_embedding"][None, :], patches @ kernel.T])
            x = x + w["vision_model.embeddings.position_embedding.weight"][: len(x)]
            x = _layer_norm(x, w["vision_model.pre_layrnorm.weight"], w["vision_model.pre_layrnorm.bias"], eps)
            for i in range(cfg["num_hidden_layers"]):
                x = self._block(x, f"vision_model.encoder.layers.{i}", cfg["num_attention_heads"], None, eps)
            pooled = _layer_norm(x[0], w["vision_model.post_layernorm.weight"], w["vision_model.post_layernorm.bias"],
                                 eps)
            out.append(pooled @ w["visual_projection.weight"].T)
        return _unit(np.stack(out))
