"""Encoders: text description, image reading, CLIP model and the Arrow pandas UDFs."""
