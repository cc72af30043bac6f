"""Email-domain claims of an account's single sign-on: claimed from the SSO settings, and signing people
in only once proven — approved by the operator in the admin, or confirmed through a signed link (one
use, CONFIRMATION_MAX_AGE) mailed to a domain-contact address at that domain. Every change is audited.

The addresses are the domain-contact mailboxes certificate authorities use for the same proof
(CA/Browser Forum BR 3.2.2.4.4): a mailbox anybody can get (a user at a public mail provider) must not
be able to prove a domain.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import BadHeaderError, send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.models import Account, AuditEntry, SsoConfig, SsoDomain
from tokonomics.audit import audit_record

logger = logging.getLogger(__name__)

CONFIRMATION_MAILBOXES = ("admin", "administrator", "hostmaster", "postmaster", "webmaster")
CONFIRMATION_MAX_AGE = timedelta(days=3)
CONFIRMATION_SALT = "tokonomics.sso_domain"
CONFIRMATION_COOL_DOWN = timedelta(minutes=10)  # per claim
CONFIRMATION_DAILY_CAP = 20  # per account, over the last 24 hours
SENT = "sso.domain_confirmation_sent"


class DomainConfirmationError(Exception):
    """A confirmation link that cannot be used; the message says why."""


def _taken_elsewhere(*, config: SsoConfig, domains: list[str]) -> list[str]:
    return sorted(SsoDomain.objects.filter(domain__in=domains, status=SsoDomain.Status.VERIFIED)
                  .exclude(config=config).values_list("domain", flat=True))


def sso_domains_sync(*, config: SsoConfig, actor: User, domains: list[str]) -> None:
    """Make the config's claims exactly `domains`: new ones start pending, dropped ones go. A domain
    another account verified is refused. Call inside the transaction that saves `config`."""
    domains = sorted({d.strip().lower() for d in domains if d.strip()})
    taken = _taken_elsewhere(config=config, domains=domains)
    if taken:
        verb = "signs" if len(taken) == 1 else "sign"
        raise ValidationError({"allowed_domains": f"{', '.join(taken)} already {verb} in through another account."})
    account = config.account
    for claim in config.domains.exclude(domain__in=domains):
        claim.delete()
        audit_record(account=account, actor=actor, action="sso.domain_removed", target=claim.domain,
                     before={"domain": claim.domain, "status": claim.status})
    existing = set(config.domains.values_list("domain", flat=True))
    for domain in domains:
        if domain not in existing:
            SsoDomain.objects.create(config=config, domain=domain)
            audit_record(account=account, actor=actor, action="sso.domain_claimed", target=domain,
                         after={"domain": domain, "status": SsoDomain.Status.PENDING})


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=CONFIRMATION_SALT)


def _mail_limit_problem(*, claim: SsoDomain, account: Account) -> str | None:
    """Owners must not be able to flood a domain's contacts: the audit log counts what was sent."""
    sent = AuditEntry.objects.filter(account=account, action=SENT)
    now = timezone.now()
    if sent.filter(target=claim.domain, created_at__gt=now - CONFIRMATION_COOL_DOWN).exists():
        minutes = int(CONFIRMATION_COOL_DOWN.total_seconds() // 60)
        return (f"A confirmation link for {claim.domain} was sent less than {minutes} minutes ago: "
                f"wait for it (or wait {minutes} minutes before asking for another).")
    count = sent.filter(created_at__gt=now - timedelta(days=1)).count()
    if count >= CONFIRMATION_DAILY_CAP:
        return (f"This account sent {count} confirmation mails in the last 24 hours, the most allowed: "
                "try again tomorrow, or ask the operator to approve the domain.")
    return None


def sso_domain_confirmation_send(*, claim: SsoDomain, actor: User, mailbox: str) -> str:
    """Mail a confirmation link for a pending claim to `mailbox`@domain. A new link replaces the previous
    one once it is sent. At most one mail per claim per CONFIRMATION_COOL_DOWN, CONFIRMATION_DAILY_CAP per
    account a day. Returns the address written to; raises ValidationError if the mail was not sent."""
    if mailbox not in CONFIRMATION_MAILBOXES:
        raise ValidationError(f"Choose one of: {', '.join(CONFIRMATION_MAILBOXES)}.")
    if claim.status != SsoDomain.Status.PENDING:
        raise ValidationError(f"{claim.domain} is already verified.")
    address = f"{mailbox}@{claim.domain}"
    account = claim.config.account
    try:
        with transaction.atomic():
            # The config row serialises sends of one account, so the limits hold under concurrent requests.
            SsoConfig.objects.select_for_update().filter(pk=claim.config_id).first()
            if problem := _mail_limit_problem(claim=claim, account=account):
                raise ValidationError(problem)
            claim.confirmation_nonce, claim.confirmation_sent_to = secrets.token_urlsafe(24), address
            claim.save(update_fields=["confirmation_nonce", "confirmation_sent_to"])
            audit_record(account=account, actor=actor, action=SENT, target=claim.domain,
                         after={"domain": claim.domain, "to": address})
            token = _signer().sign_object({"d": claim.pk, "n": claim.confirmation_nonce})
            context = {"account": account, "domain": claim.domain, "actor": getattr(actor, "email", ""),
                       "url": settings.SITE_URL + reverse("sso_domain_confirm", args=[token]),
                       "days": CONFIRMATION_MAX_AGE.days}
            # An account name is the owners' text: one line in a header, whatever it holds.
            subject = " ".join(f"Confirm that {account.name} may sign in people of {claim.domain}".split())
            # Sent inside the transaction: a mail that fails rolls the new nonce back, the live link stays.
            # The row lock waits on it, for at most EMAIL_TIMEOUT.
            send_mail(subject, render_to_string("billing/sso_domain_email.txt", context), None, [address])
    except (OSError, smtplib.SMTPException, BadHeaderError) as error:
        claim.refresh_from_db()
        logger.warning("domain confirmation to %s not sent: %s", address, error)
        raise ValidationError(f"The mail to {address} could not be sent ({error}).") from None
    return address


def sso_domain_confirmation_get(*, token: str) -> SsoDomain:
    """The pending claim a confirmation link is for, if the link is genuine, recent and still open."""
    try:
        payload = _signer().unsign_object(token, max_age=CONFIRMATION_MAX_AGE)
    except signing.SignatureExpired:
        raise DomainConfirmationError("This confirmation link has expired. Ask for a new one.") from None
    except signing.BadSignature:
        raise DomainConfirmationError("This confirmation link is not valid.") from None
    claim = SsoDomain.objects.select_related("config__account").filter(pk=payload.get("d")).first()
    if claim is None or claim.status != SsoDomain.Status.PENDING or not claim.confirmation_nonce \
            or not secrets.compare_digest(claim.confirmation_nonce, str(payload.get("n", ""))):
        raise DomainConfirmationError("This confirmation link was already used or replaced by a newer one.")
    return claim


def _verify(claim: SsoDomain, *, actor: User | None, by: str, method: str) -> SsoDomain:
    claim.status, claim.verified_by, claim.verified_at = SsoDomain.Status.VERIFIED, by, timezone.now()
    claim.confirmation_nonce = ""
    try:
        with transaction.atomic():
            claim.save(update_fields=["status", "verified_by", "verified_at", "confirmation_nonce"])
            audit_record(account=claim.config.account, actor=actor or by, action="sso.domain_verified",
                         target=claim.domain, before={"status": SsoDomain.Status.PENDING},
                         after={"status": SsoDomain.Status.VERIFIED, "method": method, "by": by})
    except IntegrityError:
        # The partial unique index: another account verified this domain first.
        claim.refresh_from_db()
        raise ValidationError(f"{claim.domain} is already verified for another account.") from None
    return claim


def sso_domain_confirm(*, token: str) -> SsoDomain:
    """Use a confirmation link: the claim becomes verified, and the link is spent."""
    with transaction.atomic():
        claim = sso_domain_confirmation_get(token=token)
        SsoDomain.objects.select_for_update().filter(pk=claim.pk).first()  # one use, even when clicked twice
        claim = sso_domain_confirmation_get(token=token)
        return _verify(claim, actor=None, by=claim.confirmation_sent_to, method="email")


def sso_domain_approve(*, claim: SsoDomain, actor: User) -> SsoDomain:
    """The operator's approval (Django admin): they checked the account controls the domain."""
    if claim.status == SsoDomain.Status.VERIFIED:
        return claim
    return _verify(claim, actor=actor, by=getattr(actor, "email", "") or str(actor), method="operator")
