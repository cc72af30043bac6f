"""The built-in LLM simulator: a fast, deterministic fake of the OpenAI, Anthropic and Gemini HTTP APIs
(real wire formats, realistic usage), steered by `X-Sim-*` request headers.

Routes: OpenAI `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses`, `/v1/embeddings`,
`GET /v1/models`; Anthropic `POST /v1/messages`, `/v1/messages/count_tokens`; Gemini
`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`, `:countTokens`, `:embedContent`,
`:batchEmbedContents` and `GET /v1beta/models` (and the same under `/v1`). Base URLs: `{sim}/v1` for
OpenAI SDKs, `{sim}` for Anthropic's and google-genai's. Any credential is accepted in
`Authorization: Bearer …` (OpenAI, Anthropic), `x-api-key` (Anthropic) or `x-goog-api-key` / `?key=`
(Gemini); without one the answer is that provider's 401 (Gemini's 403).

Request headers for tests:
    X-Sim-Cached-Tokens: N          N cached input tokens (OpenAI cached_tokens, Anthropic cache reads,
                                    Gemini cachedContentTokenCount)
    X-Sim-Cache-Write-Tokens: N     Anthropic cache writes at the 5-minute rate
    X-Sim-Cache-Write-1h-Tokens: N  Anthropic cache writes at the 1-hour rate
    X-Sim-Reasoning-Tokens: N       OpenAI reasoning tokens, counted inside the output tokens; Gemini
                                    thoughtsTokenCount, counted beside the candidates
    X-Sim-Prompt-Tokens: N          Gemini promptTokenCount as given (a long-context price tier)
    X-Sim-Tool-Use-Prompt-Tokens: N Gemini toolUsePromptTokenCount
    X-Sim-Status: 429               that provider's error, with that status
    X-Sim-Fail-Model: MODEL         …only for requests naming MODEL (a route's other targets answer)
    X-Sim-Fail-Times: N             …only the first N times per X-Sim-Fail-Key: TOKEN
    X-Sim-Retry-After: V            …with Retry-After: V on the error
    X-Sim-Fixture: NAME             replay fixtures_dir/NAME byte for byte (.sse: one event per write)
    X-Sim-Hold: TOKEN               stream the first event, then wait for POST /_sim/release/TOKEN
    X-Sim-Drop-After: N             close the connection after N streamed events
    X-Sim-Drop-Body-After: N        a JSON answer: its headers and first N body bytes, then the connection closes
    X-Sim-Latency-Ms / X-Sim-Chunk-Delay-Ms: N   this request's delays
    X-Sim-Words: N                  reply length (default 24 words, one output token each)
    X-Sim-Extra-Usage-Choice: 1     OpenAI stream with the usage on the finishing chunk, as some
                                    compatible providers send it

Introspection: `GET /_sim/requests` (the last 100 requests), `DELETE /_sim/requests`, `GET /_sim/health`.
"""

from .app import create_app
from .server import SimulatorThread, serve

__all__ = ["SimulatorThread", "create_app", "serve"]
