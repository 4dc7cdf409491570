"""Where bundles live: the Store interface, the folder store and the S3 store."""
