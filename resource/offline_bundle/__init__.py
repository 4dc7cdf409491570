"""offline-bundle: signed, encrypted bundles carried across an air gap through S3 stores."""

__version__ = "0.1.0"
