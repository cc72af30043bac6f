"""Run by tests/proxy/test_proxy_worker.py in a process of its own: serve `tokonomics.proxy_asgi`,
send it the calls a proxy worker sees (JSON and streamed, both wire formats, a denial, a scrape),
then print, as JSON, which modules of `sys.argv[2:]` the process has loaded. urllib, not httpx, is the
client: httpx is one of the modules a proxy worker must not need."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request

import uvicorn

import tokonomics.proxy_asgi


def call(url: str, body: dict | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def main(key: str, web_only: list[str]) -> None:
    config = uvicorn.Config(tokonomics.proxy_asgi.application, host="127.0.0.1", port=0, loop="uvloop",
                            http="httptools", log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    auth = {"Authorization": f"Bearer {key}"}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    message = {"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    statuses = [
        call(f"{base}/proxy/openai/chat/completions", chat, auth),
        call(f"{base}/proxy/openai/chat/completions", {**chat, "stream": True}, auth),
        call(f"{base}/proxy/anthropic/v1/messages", {**message, "stream": True},
             {"x-api-key": key, "anthropic-version": "2023-06-01"}),
        call(f"{base}/proxy/openai/chat/completions", chat, {"Authorization": "Bearer mk_" + "x" * 40}),
        call(f"{base}/metrics"),
        call(f"{base}/admin/"),
    ]
    time.sleep(0.3)  # the calls settle and queue their usage events just after their responses
    server.should_exit = True
    thread.join(timeout=10)
    loaded = sorted(m for m in sys.modules if any(m == w or m.startswith(w + ".") for w in web_only))
    print(json.dumps({"statuses": statuses, "web_only_loaded": loaded}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
