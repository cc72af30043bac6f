"""The guardrails step of a call: the request's text masked or refused and the account's system prompt put
in (after admission, before forwarding), and a non-streamed answer's text filtered on its way back
(proxy/guardrail_stream.py does streams).

A key without a policy costs the call one attribute check in the gateway (`call.key.guardrails is None`);
everything here runs only for keys with one. What matched is never kept: the session counts hits by rule id
and action (its token map, for `restore`, lives in memory for the call's life).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .errors import content_policy_error
from .guardrail_fields import system_prompt_apply, text_fields_rewrite
from .guardrails.policy import GuardrailBlocked
from .providers.base import decode_json_object

if TYPE_CHECKING:
    from .gateway import Call
    from .guardrails.policy import GuardrailSession

GUARDRAIL_HEADER = b"x-tokonomics-guardrail"
# A client cannot make the header long: at most this many rule ids (each a ≤ 48-character slug).
MAX_HEADER_RULES = 20


def guardrails_input(call: Call) -> None:
    """Mask, check and refuse the request's text per the key's policy, and put in the server-side system prompt;
    the body is serialised again only when something changed (else the client's bytes go upstream)."""
    assert call.key is not None and call.key.guardrails is not None
    policy = call.key.guardrails
    session = call.guardrails = policy.new_session()
    info = call.info
    if info is None:
        return  # a free or unmetered route: its body is not read (CONTRACT: guardrails apply to metered calls)
    body = decode_json_object(info.body)
    if body is None:
        return
    changed = False

    def rewrite(text: str, from_user: bool) -> str:
        nonlocal changed
        if from_user:
            session.check_injection(text)
        out = session.scan_input(text)
        if out != text:
            changed = True
        return out

    try:
        text_fields_rewrite(info.operation.value, body, rewrite)
    except GuardrailBlocked as exc:
        raise content_policy_error(rule_id=exc.rule_id, scope="input") from None
    prompt = policy.system_prompt
    if prompt is not None and system_prompt_apply(info.operation.value, body, text=prompt.text, mode=prompt.mode):
        changed = True
    if changed:
        info.body = orjson.dumps(body)


def warned_header(session: GuardrailSession | None) -> list[tuple[bytes, bytes]]:
    """`X-Tokonomics-Guardrail: <rule ids>` when a `warn` rule matched; nothing otherwise."""
    if session is None or not session.warned:
        return []
    rules = list(dict.fromkeys(session.warned))[:MAX_HEADER_RULES]
    return [(GUARDRAIL_HEADER, ",".join(rules).encode())]


def output_checked(call: Call) -> bool:
    """Whether the answer passes through the output filter (a rule on output, or `restore`)."""
    return call.guardrails is not None and call.key is not None and call.key.guardrails is not None \
        and call.key.guardrails.checks_output


def _texts_rewrite(operation: str, body: dict[str, Any], rewrite: Any) -> None:
    """Every generated text of a non-streamed answer, rewritten in place."""
    if operation in ("chat", "completions"):
        for choice in body.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = rewrite(message["content"])
            if isinstance(choice.get("text"), str):
                choice["text"] = rewrite(choice["text"])
    elif operation == "responses":
        for item in body.get("output") or ():
            for part in (item.get("content") or ()) if isinstance(item, dict) else ():
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    part["text"] = rewrite(part["text"])
        if isinstance(body.get("output_text"), str):
            body["output_text"] = rewrite(body["output_text"])
    elif operation == "messages":
        for block in body.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                block["text"] = rewrite(block["text"])
    elif operation == "generate_content":
        for candidate in body.get("candidates") or ():
            content = candidate.get("content") if isinstance(candidate, dict) else None
            for part in (content.get("parts") or ()) if isinstance(content, dict) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = rewrite(part["text"])


def guardrails_output_body(call: Call, body: bytes, status: int) -> tuple[int, bytes]:
    """A non-streamed answer's (status, body) after the output rules: text masked or restored, or, when a rule
    blocks, the provider's 400 `content_policy_violation` in place of the answer (which was generated, and
    is billed as usual)."""
    session = call.guardrails
    if session is None or call.info is None or status >= 400:
        return status, body
    payload = decode_json_object(body)
    if payload is None:
        return status, body
    changed = False

    def rewrite(text: str) -> str:
        nonlocal changed
        out = session.filter_output_text(text)
        if out != text:
            changed = True
        return out

    try:
        _texts_rewrite(call.info.operation.value, payload, rewrite)
    except GuardrailBlocked as exc:
        error = content_policy_error(rule_id=exc.rule_id, scope="output")
        return error.status, call.wire.error_body(status=error.status, error_type=error.error_type,
                                                  message=error.message, code=error.code)
    return status, orjson.dumps(payload) if changed else body


def hits_for_record(session: GuardrailSession | None) -> list[dict[str, Any]]:
    """The usage record's `guardrail_hits`: rule id, action, count; never the text that matched."""
    if session is None:
        return []
    return [{"rule": rule, "action": action, "count": count}
            for (rule, action), count in sorted(session.hits.items())]
