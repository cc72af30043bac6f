"""`tokonomics run -- CMD …` runs an agent as one session (X-Tokonomics-Session) and prints what it cost;
`tokonomics sessions` lists recent ones. Talks to Tokonomics at TOKONOMICS_URL: the proxy with the key in
TOKONOMICS_KEY, the REST API (for summaries) with the management token in TOKONOMICS_TOKEN."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from .forwarder import Forwarder
from .git_context import git_context, git_header

SUMMARY_WAIT_SECONDS = 10.0  # records reach the database within about 2 seconds (CONTRACT §4)


def _environment(name: str, *, required: bool = True) -> str:
    value = os.environ.get(name, "").strip()
    if required and not value:
        raise SystemExit(f"tokonomics: set {name}")
    return value


def session_name(command: list[str]) -> str:
    return shlex.join(command)[:200]


def child_environment(base: dict[str, str], *, forwarder_url: str, key: str, session: str) -> dict[str, str]:
    """The child's environment: both SDKs pointed at the forwarder, with the Tokonomics key as their key."""
    return {
        **base,
        "OPENAI_BASE_URL": f"{forwarder_url}/proxy/openai",
        "ANTHROPIC_BASE_URL": f"{forwarder_url}/proxy/anthropic",
        "OPENAI_API_KEY": key,
        "ANTHROPIC_API_KEY": key,
        "TOKONOMICS_SESSION": session,
    }


def session_fetch(*, url: str, token: str, session: str, expected_calls: int) -> dict[str, Any] | None:
    """The session's summary from the REST API, once it holds the calls the forwarder saw (or after a wait)."""
    deadline = time.monotonic() + SUMMARY_WAIT_SECONDS
    found = None
    while True:
        response = httpx.get(f"{url}/api/v1/sessions/{quote(session, safe='')}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
        if response.status_code == 200:
            found = dict(response.json())
            if found["calls"] >= expected_calls:
                return found
        elif response.status_code != 404:
            response.raise_for_status()
        if time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def summary_print(summary: dict[str, Any] | None, *, session: str, git_start: dict[str, str],
                  git_end: dict[str, str], out: TextIO) -> None:
    print(f"\ntokonomics: session {session}", file=out)
    if git_start:
        moved = "" if git_end.get("commit") == git_start.get("commit") else f" → {git_end.get('commit', '')[:12]}"
        dirty = " (dirty)" if git_end.get("dirty") == "1" else ""
        print(f"  git: {git_start.get('repo', '')} {git_start.get('branch', '')} "
              f"{git_start.get('commit', '')[:12]}{moved}{dirty}", file=out)
    if summary is None:
        print("  no calls recorded", file=out)
        return
    tokens = summary["input_tokens"] + summary["output_tokens"]
    print(f"  calls: {summary['calls']}  tokens: {tokens} ({summary['input_tokens']} in / "
          f"{summary['output_tokens']} out)  cost: ${Decimal(summary['cost_usd']):.6f}", file=out)
    for row in summary["by_model"]:
        print(f"    {row['name'] or '(no model)'}: {row['calls']} calls, "
              f"{row['input_tokens'] + row['output_tokens']} tokens, ${Decimal(row['cost_usd']):.6f}", file=out)


def run(command: list[str], *, summary_file: str | None = None) -> int:
    url = _environment("TOKONOMICS_URL").rstrip("/")
    key = _environment("TOKONOMICS_KEY")
    token = _environment("TOKONOMICS_TOKEN", required=False)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SystemExit("tokonomics run: give a command, e.g. tokonomics run -- python agent.py")
    session = f"run_{uuid.uuid4().hex[:20]}"
    cwd = Path.cwd()
    git_start = git_context(cwd)
    headers = {"X-Tokonomics-Session": session, "X-Tokonomics-Session-Name": session_name(command)}
    if git_start:
        headers["X-Tokonomics-Session-Git"] = git_header(git_start)
    forwarder = Forwarder(upstream=url, session_headers=headers, git_header=lambda: git_header(git_context(cwd)))
    forwarder.start()
    try:
        env = child_environment(dict(os.environ), forwarder_url=forwarder.url, key=key, session=session)
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as exc:
            print(f"tokonomics run: {exc}", file=sys.stderr)
            return 127
        try:
            code = child.wait()
        except KeyboardInterrupt:
            code = child.wait()  # the child got the same SIGINT; its exit code is ours
    finally:
        forwarder.stop()
    git_end = git_context(cwd)
    summary = None
    if token and forwarder.calls:
        try:
            summary = session_fetch(url=url, token=token, session=session, expected_calls=forwarder.calls)
        except httpx.HTTPError as exc:
            print(f"tokonomics: no summary ({exc})", file=sys.stderr)
    elif forwarder.calls:
        print("tokonomics: set TOKONOMICS_TOKEN (a read-only management token) for a summary", file=sys.stderr)
    summary_print(summary, session=session, git_start=git_start, git_end=git_end, out=sys.stderr)
    if summary_file and summary is not None:
        Path(summary_file).write_text(json.dumps({**summary, "git_end_local": git_header(git_end)}, indent=2) + "\n")
    return code


def sessions(limit: int) -> int:
    url = _environment("TOKONOMICS_URL").rstrip("/")
    token = _environment("TOKONOMICS_TOKEN")
    response = httpx.get(f"{url}/api/v1/sessions", params={"limit": limit},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    response.raise_for_status()
    for row in response.json():
        print(f"{row['last_at'][:19]}  {row['session']:<26} {row['calls']:>6} calls  "
              f"${Decimal(row['cost_usd']):>12.6f}  {int(row['duration_seconds']):>6}s  {row['name'][:60]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokonomics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a command as one session: tokonomics run -- CMD …")
    run_parser.add_argument("--summary-file", help="also write the session's summary there, as JSON")
    run_parser.add_argument("cmd", nargs=argparse.REMAINDER)
    list_parser = commands.add_parser("sessions", help="recent sessions")
    list_parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.cmd, summary_file=args.summary_file)
    return sessions(args.limit)


if __name__ == "__main__":
    sys.exit(main())
