"""Delivery to remote destinations: ``sender`` (queue, retries, backoff), ``spool`` (the
on-disk fallback and the batches it holds) and ``settings`` (one destination's delivery
settings). Import from the modules: this package face imports nothing, so that reading the
settings does not load an HTTP client."""
