"""Vector indexes over product_embeddings_multimodal: filters, the embedded local index and its Delta sync."""
