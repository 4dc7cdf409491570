"""A real git repository on disk, reached as file://, for testing the git client against the git binary.

Why real git rather than canned ``ls-remote`` output: resolving refs, peeling annotated tags, shallow
fetches of one commit and ``git archive``'s bytes are git's behaviour, which a fake would only guess.
Commits have fixed authors and dates so their hashes are the same on every run; the user's git config
is kept out (``GIT_CONFIG_GLOBAL=/dev/null``) so a developer's settings change nothing.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def git_env(when: int = 1_700_000_000) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.invalid",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.invalid",
        GIT_AUTHOR_DATE=f"@{when} +0000",
        GIT_COMMITTER_DATE=f"@{when} +0000",
    )
    return env


@dataclass
class GitRepo:
    """A non-bare repository: ``main`` with three commits, branch ``feature`` off the second one, an
    annotated tag ``v1.0`` and a lightweight tag ``light`` on the first; HEAD is ``main``."""

    path: Path
    commits: dict[str, str] = field(default_factory=dict)  # label -> commit hash
    _clock: int = 1_700_000_000

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        self._clock += 60
        proc = subprocess.run(
            ["git", *args], cwd=self.path, env=git_env(self._clock), check=True, capture_output=True, text=True
        )
        return proc.stdout.strip()

    def commit(self, label: str, files: dict[str, str]) -> str:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", label)
        self.commits[label] = self.git("rev-parse", "HEAD")
        return self.commits[label]

    def move_branch(self, branch: str, label: str, files: dict[str, str]) -> str:
        """A new commit on ``branch`` (the branch moves on); back on ``main`` afterwards."""
        self.git("checkout", "--quiet", branch)
        try:
            return self.commit(label, files)
        finally:
            self.git("checkout", "--quiet", "main")


def make_repo(path: Path) -> GitRepo:
    path.mkdir(parents=True)
    repo = GitRepo(path)
    repo.git("init", "--quiet", "-b", "main")
    repo.commit("first", {"README.md": "first\n", "ci/tasks/build.yml": "platform: linux\nrun: {path: echo}\n"})
    repo.git("tag", "-a", "v1.0", "-m", "release 1.0")
    repo.git("tag", "light")
    repo.commit("second", {"README.md": "second\n", "src/app.py": "print('hi')\n"})
    repo.git("branch", "feature")
    repo.commit("third", {"README.md": "third\n"})
    repo.move_branch("feature", "feature-1", {"feature.txt": "on the feature branch\n"})
    repo.commits["v1.0-tag-object"] = repo.git("rev-parse", "v1.0")
    return repo
