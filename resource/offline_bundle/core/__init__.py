"""The bottom layer: names, configuration, the manifest, versions, progress, confined file access."""
