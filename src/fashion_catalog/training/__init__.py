"""Catalog CLIP training: captions, losses and augmentation, and the trainer (data, schedule, loop, save)."""
