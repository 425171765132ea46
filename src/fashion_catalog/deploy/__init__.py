"""Deployment steps a Databricks Asset Bundle cannot declare (the setup job)."""
