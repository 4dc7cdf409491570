"""Exceptions whose message is shown to the user as one line.

Every failure a user can cause or fix is a ``BundleError``; its message must be safe to print
(no secret values) because the protocol entry points print it verbatim to stderr.
"""


class BundleError(Exception):
    """A failure with a message meant for the operator."""


class ConfigError(BundleError):
    """The request, the source or the params are wrong."""


class VerificationError(BundleError):
    """A bundle does not verify: signature, hashes, file set or format."""


class StoreError(BundleError):
    """The blobstore refused or failed a request."""


class CryptoError(BundleError):
    """GnuPG refused a key or an operation."""
