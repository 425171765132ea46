"""The index back-ends the search service queries: the embedded local index that follows the Delta table,
and Databricks Vector Search Delta Sync indexes. Both implement :class:`indexes.store.IndexStore`; what
only one of them can do is a declared capability there (``HybridQueries``, ``LiveRows``)."""
