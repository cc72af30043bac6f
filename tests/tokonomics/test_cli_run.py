"""`tokonomics run -- CMD` (issue 19 §3): a child Python process calls the simulator through the live proxy
with both official SDKs, unaware of sessions; the summary shows its session, git context and cost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from tokonomics.cli.forwarder import Forwarder
from tokonomics.cli.git_context import git_header, repository_name

from ..support import KEY, Stack, token_for

TOKONOMICS = Path(sys.executable).parent / "tokonomics"  # the console script pyproject installs

AGENT = textwrap.dedent("""
    import os, subprocess
    import anthropic, openai

    # Nothing here knows about sessions: the SDKs read their base URL and key from the environment.
    chat = openai.OpenAI(max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    stream = openai.OpenAI(max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10, stream=True)
    chunks = sum(1 for _ in stream)
    message = anthropic.Anthropic(max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    print("agent:", chat.choices[0].message.content is not None, chunks > 1, message.content[0].type)
    # the agent commits its work: the summary shows the commit moving
    open("work.txt", "w").write("done")
    subprocess.run(["git", "add", "work.txt"], check=True)
    subprocess.run(["git", "commit", "-qm", "agent work"], check=True)
    raise SystemExit(3)
""")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "agent-repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "feature/loop")
    _git(repo, "config", "user.email", "agent@example.test")
    _git(repo, "config", "user.name", "Agent")
    _git(repo, "remote", "add", "origin", "https://someone:ghp_secret@git.example.test/acme/agent.git")
    (repo / "agent.py").write_text(AGENT)
    (repo / "README").write_text("x")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "start")
    (repo / "README").write_text("changed")  # uncommitted: the run starts dirty
    return repo


def test_tokonomics_run_records_the_session_git_context_and_cost(stack: Stack, repo: Path) -> None:
    start_commit = _git(repo, "rev-parse", "HEAD")
    env = {**os.environ, "TOKONOMICS_URL": stack.proxy, "TOKONOMICS_KEY": KEY,
           "TOKONOMICS_TOKEN": token_for(stack.account, read_only=True)}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    summary_file = repo.parent / "summary.json"
    child = subprocess.Popen([str(TOKONOMICS), "run", "--summary-file", str(summary_file), "--", sys.executable,
                              "agent.py"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        usage_ingest(max_seconds=0.3)  # the ledger, as a worker would run it
    out, err = child.communicate(timeout=10)
    assert child.returncode == 3, err  # the child's exit code
    assert "agent: True True text" in out

    records = list(UsageRecord.objects.filter(account=stack.account).order_by("created_at"))
    assert len(records) == 3 and len({r.session for r in records}) == 1
    session = records[0].session
    assert session.startswith("run_") and records[0].session_name.endswith("agent.py")
    git = records[0].session_git
    assert git == (f"repo=https://git.example.test/acme/agent.git;branch=feature/loop;commit={start_commit};"
                   "dirty=1")
    assert "ghp_secret" not in git and "someone" not in git

    end_commit = _git(repo, "rev-parse", "HEAD")
    assert f"session {session}" in err
    assert f"feature/loop {start_commit[:12]} → {end_commit[:12]}" in err
    assert "calls: 3" in err and "gpt-4o-mini: 2 calls" in err and "claude-sonnet-4-5: 1 calls" in err
    cost = sum(r.cost_usd for r in records)
    assert cost > 0 and f"cost: ${cost:.6f}" in err
    saved = summary_file.read_text()
    assert session in saved and start_commit in saved and '"by_provider"' in saved

    listed = subprocess.run([str(TOKONOMICS), "sessions"], env=env, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and session in listed.stdout and "3 calls" in listed.stdout


def test_the_forwarder_streams_untouched_and_adds_only_the_session_headers(stack: Stack) -> None:
    stack.clear_sim()
    forwarder = Forwarder(upstream=stack.proxy, session_headers={"X-Tokonomics-Session": "run_fwd"}).start()
    try:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
                "stream": True}
        with httpx.stream("POST", f"{forwarder.url}/proxy/openai/chat/completions", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {KEY}", "X-Tokonomics-Session": "spoofed"}) as resp:
            lines = [line for line in resp.iter_lines() if line.startswith("data:")]
        assert resp.status_code == 200 and lines[-1] == "data: [DONE]"
        assert resp.headers["x-tokonomics-request-id"].startswith("req_")
    finally:
        forwarder.stop()
    assert forwarder.calls == 1
    seen = stack.sim_requests()[-1]["headers"]
    assert not any(name.startswith("x-tokonomics") for name in seen)
    usage_ingest(max_seconds=1)
    assert UsageRecord.objects.get(account=stack.account).session == "run_fwd"


def test_git_context_never_carries_credentials() -> None:
    assert repository_name("https://u:tok@github.com/o/r.git", "/x/r") == "https://github.com/o/r.git"
    assert repository_name("git@github.com:o/r.git", "/x/r") == "github.com:o/r.git"
    assert repository_name("", "/home/me/project") == "project"
    assert git_header({"repo": "ü" * 400}).isascii() and len(git_header({"repo": "ü" * 400})) == 300
