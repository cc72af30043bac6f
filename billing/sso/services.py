"""OpenID Connect sign-in for accounts whose plan includes SSO: discovery, the authorization request
(state, nonce, PKCE S256), the code exchange, and full ID-token validation (signature against the
issuer's JWKS, iss, aud, azp, exp, iat, nonce).

Built on PyJWT and httpx rather than mozilla-django-oidc: that library reads a single provider from
settings (each account here has its own), does no discovery, and decodes ID tokens without checking
the audience or the issuer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

from billing.models import Seat, SsoConfig, SsoDomain
from tokonomics.outbound_http import outbound_client
from tokonomics.outbound_urls import url_problem

# Asymmetric algorithms only: "none" and HS* (keyed with the client secret) are refused.
ID_TOKEN_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
CLOCK_SKEW_SECONDS = 60
HTTP_TIMEOUT = httpx.Timeout(10.0)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SsoError(Exception):
    """Signing in through the identity provider failed. The message is shown to the person signing in."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_endpoint_auth_methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


def redirect_uri() -> str:
    """The callback URL to register with every identity provider (from SITE_URL, never the Host header)."""
    return settings.SITE_URL + reverse("sso_callback")


def issuer_problem(issuer: str) -> str | None:
    """Why `issuer` cannot be used, or None. OIDC requires https; plain http is accepted on loopback only."""
    parts = urlsplit(issuer)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        if parts.query or parts.fragment:
            return "An issuer URL has no query string or fragment."
        return url_problem(issuer)  # loopback too only while private URLs are allowed
    return "The issuer must be an https:// URL."


def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        with outbound_client(timeout=HTTP_TIMEOUT) as client:
            response = client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SsoError(f"Could not read the identity provider's {what} at {url} ({error}).") from None
    if not isinstance(document, dict):
        raise SsoError(f"The identity provider's {what} at {url} is not a JSON object.")
    return document


def provider_metadata_get(*, issuer: str) -> ProviderMetadata:
    """The issuer's discovery document. Fetched at every sign-in: sign-ins are rare, and a provider
    that moves its endpoints or rotates keys is then followed at once."""
    document = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery document")
    if document.get("issuer") != issuer:
        raise SsoError(
            f"The discovery document names the issuer {document.get('issuer')!r}, not {issuer!r}: "
            "set the issuer in the SSO settings to exactly that value."
        )
    try:
        return ProviderMetadata(
            issuer=issuer,
            authorization_endpoint=str(document["authorization_endpoint"]),
            token_endpoint=str(document["token_endpoint"]),
            jwks_uri=str(document["jwks_uri"]),
            token_endpoint_auth_methods=tuple(
                document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            ),
        )
    except KeyError as missing:
        raise SsoError(f"The identity provider's discovery document has no {missing}.") from None


def _code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_request_create(*, config: SsoConfig, metadata: ProviderMetadata) -> AuthorizationRequest:
    """Where to send the browser, with the secrets the callback must check kept apart."""
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    query = urlencode({
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri(),
        "scope": "openid email",
        "state": state,
        "nonce": nonce,
        "code_challenge": _code_challenge(verifier),
        "code_challenge_method": "S256",
    })
    separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
    return AuthorizationRequest(f"{metadata.authorization_endpoint}{separator}{query}", state, nonce, verifier)


def code_exchange(*, config: SsoConfig, metadata: ProviderMetadata, code: str, code_verifier: str) -> str:
    """Trade the authorization code for the ID token (a JWS, not yet validated)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri(),
            "code_verifier": code_verifier}
    auth = None
    if "client_secret_basic" in metadata.token_endpoint_auth_methods:
        # RFC 6749 §2.3.1: both halves are form-encoded before they are joined.
        auth = httpx.BasicAuth(quote(config.client_id, safe=""), quote(config.client_secret(), safe=""))
    else:
        form |= {"client_id": config.client_id, "client_secret": config.client_secret()}
    try:
        with outbound_client(timeout=HTTP_TIMEOUT) as client:
            response = client.post(metadata.token_endpoint, data=form,
                                   auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                                   headers={"Accept": "application/json"})
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SsoError(f"Could not reach the identity provider's token endpoint ({error}).") from None
    if response.status_code != 200 or not isinstance(body, dict):
        detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
        raise SsoError(f"The identity provider refused the sign-in code ({detail or response.status_code}).")
    id_token = body.get("id_token")
    if not isinstance(id_token, str):
        raise SsoError("The identity provider answered without an ID token.")
    return id_token


def _signing_key(metadata: ProviderMetadata, header: dict[str, Any]) -> jwt.PyJWK:
    algorithm = header.get("alg")
    if algorithm not in ID_TOKEN_ALGORITHMS:
        raise SsoError(f"The ID token is signed with {algorithm!r}, which is not accepted.")
    keys = _get_json(metadata.jwks_uri, "key set").get("keys")
    candidates = [
        key for key in keys or []
        if isinstance(key, dict) and key.get("use", "sig") == "sig"
        and (header.get("kid") is None or key.get("kid") == header.get("kid"))
        and key.get("alg", algorithm) == algorithm
    ]
    if len(candidates) != 1:
        raise SsoError("The ID token's signing key is not (or not uniquely) in the identity provider's key set.")
    try:
        return jwt.PyJWK(candidates[0], algorithm=algorithm)
    except jwt.PyJWTError as error:
        raise SsoError(f"The identity provider's signing key cannot be used ({error}).") from None


def id_token_validate(*, config: SsoConfig, metadata: ProviderMetadata, id_token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims, once its signature, issuer, audience, lifetime and nonce all check out."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise SsoError("The ID token is not a signed JWT.") from None
    key = _signing_key(metadata, header)
    try:
        claims = jwt.decode(
            id_token, key.key, algorithms=[key.algorithm_name], audience=config.client_id, issuer=metadata.issuer,
            leeway=CLOCK_SKEW_SECONDS, options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise SsoError("The ID token has expired. Sign in again.") from None
    except jwt.InvalidAudienceError:
        raise SsoError("The ID token was issued for another application (audience).") from None
    except jwt.InvalidIssuerError:
        raise SsoError("The ID token was issued by another identity provider (issuer).") from None
    except jwt.InvalidSignatureError:
        raise SsoError("The ID token's signature does not verify.") from None
    except jwt.PyJWTError as error:
        raise SsoError(f"The ID token is not valid ({error}).") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != config.client_id:
        raise SsoError("The ID token was issued for another application (authorized party).")
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise SsoError("The ID token does not belong to this sign-in (nonce). Start again.")
    return claims


def sso_config_for_email(*, email: str) -> SsoConfig | None:
    """The active SSO configuration that verified the email's domain (one at most: the database allows
    one verified claim per domain). A domain that is only claimed offers no SSO."""
    domain = email.rpartition("@")[2].lower()
    claim = SsoDomain.objects.select_related("config__account__plan").filter(
        domain=domain, status=SsoDomain.Status.VERIFIED, config__enabled=True, config__account__plan__sso=True
    ).first()
    return claim.config if claim else None


def sso_available() -> bool:
    return SsoDomain.objects.filter(
        status=SsoDomain.Status.VERIFIED, config__enabled=True, config__account__plan__sso=True
    ).exists()


def sso_required_configs(*, user: User) -> list[SsoConfig]:
    """The SSO configurations that refuse this person's password: those of the accounts they hold a seat
    in that disabled passwords and whose verified domains include theirs (so SSO is open to them)."""
    email = getattr(user, "email", "") or ""
    if not email or user.pk is None:
        return []
    configs = SsoConfig.objects.select_related("account__plan").filter(
        account__seats__user=user, enabled=True, password_login_disabled=True, account__plan__sso=True
    ).distinct()
    return [config for config in configs if config.allows_email(email)]


def password_login_blocked(*, user: User) -> SsoConfig | None:
    """The SSO configuration that forbids this person a password sign-in, when every account they hold a
    seat in requires SSO. With any other account, the password signs them in to those only
    (billing.sso.session_scope keeps the ones requiring SSO closed until their IdP signs the person in)."""
    required = sso_required_configs(user=user)
    if not required:
        return None
    seated = set(Seat.objects.filter(user=user).values_list("account_id", flat=True))
    return required[0] if seated <= {config.account_id for config in required} else None
