"""API routers of the items service."""
