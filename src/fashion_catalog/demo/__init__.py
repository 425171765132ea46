"""The local end-to-end demo scenario (``make demo``): catalog, model, stream, a catalog editor's edits."""
