"""Pinning pipelines: lock, pin, fetch; container images (OCI) and remote files."""
