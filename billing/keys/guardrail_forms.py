"""The guardrail policy form: the common cases without writing JSON (PII checkboxes, an action, rules one a line,
a system prompt, the injection check), turned into the spec the proxy compiles (proxy/guardrails/policy.py) and
back. The engine validates the result; its messages are shown on the form."""

from __future__ import annotations

from typing import Any

from django import forms

from proxy.guardrails.policy import PII_TYPES

ACTIONS = [("mask", "mask (replace the match)"), ("block", "block (refuse the call, 400)"),
           ("warn", "warn (pass it, say so in a header)"), ("log", "log (count it only)")]
RULE_KINDS = ("regex", "keywords", "pii")
RULE_SCOPES = ("input", "output", "both")
PII_LABELS = {"email": "Email addresses", "phone": "Phone numbers", "card": "Payment cards (Luhn-checked)",
              "iban": "IBANs (checksum)", "ssn": "US social security numbers", "ip": "IP addresses (v4, v6)",
              "secret": "API keys and secrets (OpenAI, Anthropic, AWS, GitHub, Slack, Stripe, JWTs)",
              "private_key": "PEM private keys"}
RULES_HELP = ("One rule a line: id | action | scope | kind | pattern. Kinds: regex (a Python pattern), keywords "
              "(comma-separated), pii (types, comma-separated). Scopes: input, output, both. E.g. "
              "no-project-x | block | both | keywords | project x, codename falcon")
CUSTOM_HELP = "Your own PII patterns, one a line: id | LABEL | regex. E.g. employee-id | EMPLOYEE_ID | EMP-\\d{6}"


class GuardrailPolicyForm(forms.Form):
    pii_types = forms.MultipleChoiceField(
        label="Mask personal data and secrets", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(t, PII_LABELS.get(t, t)) for t in PII_TYPES])
    pii_action = forms.ChoiceField(label="When personal data is found", choices=ACTIONS, initial="mask")
    pii_replacement = forms.ChoiceField(label="Replace it with", initial="label", choices=[
        ("label", "a label: [EMAIL], [CARD]…"), ("token", "a numbered token per call: [EMAIL_1]…")])
    pii_restore = forms.BooleanField(
        label="Swap the originals back into the answer (tokens only; the mapping lives for the call only)",
        required=False)
    pii_custom = forms.CharField(label="Custom patterns", required=False, help_text=CUSTOM_HELP,
                                 widget=forms.Textarea(attrs={"rows": 3}))
    rules = forms.CharField(label="Content rules", required=False, help_text=RULES_HELP,
                            widget=forms.Textarea(attrs={"rows": 4}))
    system_prompt = forms.CharField(label="Server-side system prompt", required=False, max_length=20_000,
                                    widget=forms.Textarea(attrs={"rows": 4}),
                                    help_text="Chat completions, Responses and Messages calls get it.")
    system_prompt_mode = forms.ChoiceField(label="System prompt", initial="prepend", choices=[
        ("prepend", "before the client's own instructions"), ("replace", "in place of the client's instructions")])
    injection_enabled = forms.BooleanField(label="Check user text for prompt injection and jailbreaks",
                                           required=False)
    injection_threshold = forms.FloatField(label="Injection score threshold", min_value=0, max_value=1,
                                           initial=0.7, required=False,
                                           help_text="0 to 1: a higher threshold flags fewer, surer cases.")
    injection_action = forms.ChoiceField(label="When the score reaches it", initial="block",
                                         choices=[a for a in ACTIONS if a[0] != "mask"])

    def clean_rules(self) -> list[dict[str, Any]]:
        rules = []
        for number, line in enumerate(self.cleaned_data["rules"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|", 4)]
            if len(parts) != 5:
                raise forms.ValidationError(f"Line {number}: id | action | scope | kind | pattern (five parts).")
            rule_id, action, scope, kind, value = parts
            if kind not in RULE_KINDS:
                raise forms.ValidationError(f"Line {number}: kind is one of {', '.join(RULE_KINDS)}.")
            rule: dict[str, Any] = {"id": rule_id, "kind": kind, "scope": scope, "action": action}
            if kind == "regex":
                rule["pattern"] = value
            elif kind == "keywords":
                rule["keywords"] = [w.strip() for w in value.split(",") if w.strip()]
            else:
                rule["pii_types"] = [t.strip() for t in value.split(",") if t.strip()]
            rules.append(rule)
        return rules

    def clean_pii_custom(self) -> list[dict[str, str]]:
        custom = []
        for number, line in enumerate(self.cleaned_data["pii_custom"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|", 2)]
            if len(parts) != 3:
                raise forms.ValidationError(f"Line {number}: id | LABEL | regex (three parts).")
            custom.append({"id": parts[0], "label": parts[1], "pattern": parts[2]})
        return custom

    def spec(self) -> dict[str, Any]:
        """The policy the form describes; a section left empty is left out (a key's then comes from the default)."""
        data = self.cleaned_data
        spec: dict[str, Any] = {}
        if data["pii_types"] or data["pii_custom"]:
            pii: dict[str, Any] = {"types": list(data["pii_types"]), "action": data["pii_action"],
                                   "replacement": data["pii_replacement"]}
            if data["pii_restore"]:
                pii["restore"] = True
            if data["pii_custom"]:
                pii["custom"] = data["pii_custom"]
            spec["pii"] = pii
        if data["rules"]:
            spec["rules"] = data["rules"]
        if data["system_prompt"].strip():
            spec["system_prompt"] = {"text": data["system_prompt"], "mode": data["system_prompt_mode"]}
        if data["injection_enabled"]:
            threshold = data["injection_threshold"]
            spec["injection"] = {"enabled": True, "threshold": 0.7 if threshold is None else threshold,
                                 "action": data["injection_action"]}
        return spec


def form_initial(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The form's fields for a stored spec."""
    spec = spec or {}
    initial: dict[str, Any] = {}
    pii = spec.get("pii")
    if isinstance(pii, dict):
        initial.update(pii_types=list(pii.get("types", PII_TYPES)), pii_action=pii.get("action", "mask"),
                       pii_replacement=pii.get("replacement", "label"), pii_restore=bool(pii.get("restore")),
                       pii_custom="\n".join(f"{c.get('id')} | {c.get('label')} | {c.get('pattern')}"
                                            for c in pii.get("custom") or ()))
    lines = []
    for rule in spec.get("rules") or ():
        value = {"regex": rule.get("pattern", ""), "keywords": ", ".join(rule.get("keywords") or ()),
                 "pii": ", ".join(rule.get("pii_types") or ())}.get(rule.get("kind", ""), "")
        lines.append(f"{rule.get('id')} | {rule.get('action', 'block')} | {rule.get('scope', 'input')} | "
                     f"{rule.get('kind')} | {value}")
    initial["rules"] = "\n".join(lines)
    prompt = spec.get("system_prompt")
    if isinstance(prompt, dict):
        initial.update(system_prompt=prompt.get("text", ""), system_prompt_mode=prompt.get("mode", "prepend"))
    injection = spec.get("injection")
    if isinstance(injection, dict):
        initial.update(injection_enabled=injection.get("enabled", True),
                       injection_threshold=injection.get("threshold", 0.7),
                       injection_action=injection.get("action", "block"))
    return initial


class TryForm(forms.Form):
    text = forms.CharField(label="Try this text", max_length=100_000, widget=forms.Textarea(attrs={"rows": 4}),
                           help_text="Evaluated in this request only: never stored, never logged.")
    target = forms.CharField(widget=forms.HiddenInput, required=False)  # "default", or a key's id
    scope = forms.ChoiceField(label="As", initial="input", choices=[
        ("input", "a request (what the provider would get)"), ("output", "an answer (what the client would get)")])
