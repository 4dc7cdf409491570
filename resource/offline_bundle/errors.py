"""Exceptions whose message is shown to the user as one line.

Every failure a user can cause or fix is a ``BundleError``; its message must be safe to print
(no secret values) because the protocol entry points print it verbatim to stderr.
"""

import errno


class BundleError(Exception):
    """A failure with a message meant for the operator."""


class ConfigError(BundleError):
    """The request, the source or the params are wrong."""


class VerificationError(BundleError):
    """A bundle does not verify: signature, hashes, file set or format."""


class NotCommittedError(VerificationError):
    """The version asked for has no commit object: never put, not yet carried over, or a typo."""


class StoreError(BundleError):
    """The blobstore refused or failed a request."""


class CryptoError(BundleError):
    """GnuPG refused a key or an operation."""


class PathError(BundleError):
    """A local path cannot be used: missing, read-only, full, or a file where a folder belongs.

    The user or the machine caused it, so it is reported with the path and the fix, never as an
    internal error and never as a verification failure.
    """


class StoreUnreachableError(StoreError):
    """The store's endpoint did not answer: connection refused, name not resolved, timed out."""


class StoreTLSError(StoreError):
    """The TLS handshake failed: a plain-HTTP store behind https://, or a certificate not trusted."""


class NoSuchBucketError(StoreError):
    """The bucket the source names does not exist at the endpoint."""


class AccessDeniedError(StoreError):
    """The credentials may not perform an operation (read-only credentials on a put, say)."""


class AlreadyExistsError(StoreError):
    """A write that must not replace anything found an object at its key (a version put twice).

    Its own type so that callers tell "someone was first" from a failing store without reading
    the message.
    """


# What to do about an OSError, by errno; the fallback is the operating system's own words.
_OS_ERROR_HINTS = {
    errno.EROFS: "the file system is read-only: give a writable folder",
    errno.EACCES: "permission denied: make it accessible to this user or choose another path",
    errno.EPERM: "operation not permitted: make it accessible to this user or choose another path",
    errno.ENOSPC: "no space left on device: free some space or choose another folder",
    errno.EDQUOT: "the disk quota is exhausted: free some space or choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder where a file is expected",
    errno.ENOENT: "it does not exist",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ELOOP: "too many levels of symbolic links",
}


def path_error(e: OSError, path: str | None = None, doing: str = "") -> PathError:
    """One line naming the path, what went wrong and what to do; never the file's content."""
    where = path if path is not None else (e.filename if e.filename is not None else "?")
    hint = _OS_ERROR_HINTS.get(e.errno or 0) or (e.strerror or e.__class__.__name__)
    return PathError(f"{doing + ' ' if doing else ''}{where}: {hint}")


class Terminated(BaseException):
    """SIGTERM, how Concourse aborts a step, raised in the main thread so that every ``finally``
    and context manager on the way runs (gpg homes, agents, staging folders, multipart uploads).

    A BaseException, like KeyboardInterrupt: an ``except Exception`` on the way must not swallow it.
    """
