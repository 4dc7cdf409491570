"""The offline-bundle command line; nothing else imports it."""
