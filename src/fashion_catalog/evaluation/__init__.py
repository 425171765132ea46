"""How good a CLIP is on the catalog: the held-out split, retrieval metrics, the evaluation report against
a random floor, the validation scores training steers by, and the catalog-QA latent analysis."""
