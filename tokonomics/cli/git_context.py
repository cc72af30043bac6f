"""The git context of an agent run: repository, branch, commit and dirty flag, as one bounded header value."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

MAX_HEADER = 300  # the record's session_git column


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def repository_name(remote: str, toplevel: str) -> str:
    """The remote's URL without any user or token in it, else the working tree's directory name."""
    if not remote:
        return Path(toplevel).name if toplevel else ""
    if "://" in remote:
        parts = urlsplit(remote)
        host = parts.hostname or ""
        return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))
    return remote.split("@", 1)[-1]  # scp-like git@github.com:org/repo.git


def git_context(cwd: Path) -> dict[str, str]:
    """{} outside a git working tree."""
    toplevel = _git(cwd, "rev-parse", "--show-toplevel")
    if not toplevel:
        return {}
    return {
        "repo": repository_name(_git(cwd, "remote", "get-url", "origin"), toplevel),
        "branch": _git(cwd, "rev-parse", "--abbrev-ref", "HEAD"),
        "commit": _git(cwd, "rev-parse", "HEAD"),
        "dirty": "1" if _git(cwd, "status", "--porcelain", "--untracked-files=no") else "0",
    }


def git_header(context: dict[str, str]) -> str:
    """`repo=…;branch=…;commit=…;dirty=0`, percent-encoded to ASCII (a header is latin-1) and bounded."""
    text = ";".join(f"{name}={quote(value, safe='/:@.-_~+')}" for name, value in context.items())
    return text[:MAX_HEADER]
