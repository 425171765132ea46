"""CLIP's two towers as separate torch modules, the shape every exporter (ONNX, OpenVINO) converts."""

from __future__ import annotations


def tower_modules(model):
    """(text, image) ``torch.nn.Module``s: ``text(input_ids, attention_mask)``, ``image(pixel_values)``."""
    import torch

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    class Image(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.get_image_features(pixel_values=pixel_values)

    return Text(model).eval(), Image(model).eval()
