"""Carrying bundles across the gap: media pieces, export/import, mirror."""
