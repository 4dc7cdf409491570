"""Exploded parts -> ordinary objects in the air-gapped store."""
