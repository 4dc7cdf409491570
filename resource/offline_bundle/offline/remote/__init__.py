"""The connected side's clients: HTTPS downloads, git repositories and GitHub releases."""
