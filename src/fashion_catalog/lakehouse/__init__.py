"""The Spark session and the Delta tables named in the configuration (create, read, write, open)."""
