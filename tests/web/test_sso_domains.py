"""Email-domain claims of an account's SSO: pending until proven (a confirmation link mailed to a domain
contact, or the operator's approval in the admin), one verified account per domain."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail import BadHeaderError
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from billing.accounts.team import sso_user_sign_in
from billing.models import Account, AuditEntry, SsoConfig, SsoDomain
from billing.sso import domains as sso_domains
from billing.sso.services import SsoError

pytestmark = pytest.mark.django_db


@pytest.fixture
def claim(sso_config) -> SsoDomain:
    """acme claims acme.fr, not yet proven."""
    return SsoDomain.objects.create(config=sso_config, domain="acme.fr")


@pytest.fixture
def globex_sso(globex, plans, provider) -> SsoConfig:
    globex.plan = plans["enterprise"]
    globex.save()
    config = SsoConfig(account=globex, issuer=provider.issuer, client_id="globex-web")
    config.set_client_secret("globex-secret")
    config.save()
    return config


def _link(message: mail.EmailMessage) -> str:
    return re.search(r"http://\S+", message.body).group(0).removeprefix("http://127.0.0.1:8000")


def _after_the_cool_down() -> None:
    AuditEntry.objects.filter(action="sso.domain_confirmation_sent").update(
        created_at=timezone.now() - sso_domains.CONFIRMATION_COOL_DOWN)


def test_an_unverified_domain_offers_no_sso_and_signs_nobody_in(claim, sso_config):
    response = Client().post("/sso/start/", {"email": "erin@acme.fr"})
    assert response.status_code == 400 and "No single sign-on is set up for acme.fr" in response.content.decode()
    with pytest.raises(SsoError, match="not in a verified domain"):
        sso_user_sign_in(config=sso_config, claims={"email": "erin@acme.fr", "email_verified": True})


def test_sso_is_not_offered_on_the_login_page_before_a_domain_is_verified(enterprise, provider):
    config = SsoConfig(account=enterprise, issuer=provider.issuer, client_id="x")
    config.save()
    SsoDomain.objects.create(config=config, domain="acme.test")
    assert "sso/start" not in Client().get("/login/").content.decode()


def test_a_domain_verified_by_one_account_is_refused_to_another(sso_config, globex_sso, charlie):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="acme.test already signs in through another account"):
        sso_domains.sso_domains_sync(config=globex_sso, actor=charlie, domains=["acme.test"])
    assert not SsoDomain.objects.filter(config=globex_sso).exists()


def test_the_database_holds_one_verified_claim_per_domain(sso_config, globex_sso):
    with pytest.raises(IntegrityError), transaction.atomic():
        SsoDomain.objects.create(config=globex_sso, domain="acme.test", status="verified")


def test_the_confirmation_link_verifies_once(client_as, alice, claim):
    owner = client_as(alice)
    page = owner.get("/a/acme/settings/").content.decode()
    assert "acme.fr" in page and "pending: signs nobody in yet" in page and "postmaster@acme.fr" in page
    response = owner.post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "postmaster"})
    assert response.status_code == 302
    assert [m.to for m in mail.outbox] == [["postmaster@acme.fr"]]
    link = _link(mail.outbox[0])
    anyone = Client()
    shown = anyone.get(link)  # a mail scanner following the link changes nothing
    assert shown.status_code == 200 and "Confirm acme.fr" in shown.content.decode()
    claim.refresh_from_db()
    assert claim.status == "pending"
    done = anyone.post(link)
    assert done.status_code == 200 and "Confirmed" in done.content.decode()
    claim.refresh_from_db()
    assert claim.status == "verified" and claim.verified_by == "postmaster@acme.fr"
    assert anyone.post(link).status_code == 400  # one use
    entries = AuditEntry.objects.filter(action__startswith="sso.domain_").order_by("pk")
    assert [e.action for e in entries] == ["sso.domain_confirmation_sent", "sso.domain_verified"]
    assert entries[1].after == {"status": "verified", "method": "email", "by": "postmaster@acme.fr"}
    assert "verified by postmaster@acme.fr" in owner.get("/a/acme/settings/").content.decode()
    assert Client().post("/sso/start/", {"email": "erin@acme.fr"}).status_code == 302  # SSO offered now


def test_a_newer_link_replaces_the_older_and_links_expire(client_as, alice, claim, monkeypatch):
    owner = client_as(alice)
    owner.post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "admin"})
    _after_the_cool_down()
    owner.post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "hostmaster"})
    first, second = (_link(m) for m in mail.outbox)
    replaced = Client().post(first)
    assert replaced.status_code == 400 and "replaced by a newer one" in replaced.content.decode()
    monkeypatch.setattr(sso_domains, "CONFIRMATION_MAX_AGE", timedelta(seconds=-1))
    expired = Client().post(second)
    assert expired.status_code == 400 and "expired" in expired.content.decode()
    assert Client().post(second[:-4] + "abc/").status_code == 400
    claim.refresh_from_db()
    assert claim.status == "pending"


def test_only_domain_contacts_and_owners_can_ask_for_a_link(client_as, alice, carol, charlie, claim):
    bad = client_as(alice).post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "alice"})
    assert bad.status_code == 302 and not mail.outbox
    assert client_as(carol).post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm",
                                 {"mailbox": "admin"}).status_code == 403
    assert client_as(charlie).post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm",
                                   {"mailbox": "admin"}).status_code == 404
    assert not mail.outbox


def test_of_two_pending_claims_the_first_proven_wins(client_as, alice, claim, globex_sso, charlie):
    rival = SsoDomain.objects.create(config=globex_sso, domain="acme.fr")  # pending claims may coexist
    client_as(charlie).post(f"/a/globex/settings/sso/domains/{rival.pk}/confirm", {"mailbox": "admin"})
    client_as(alice).post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "admin"})
    rival_link, acme_link = (_link(m) for m in mail.outbox)
    assert Client().post(acme_link).status_code == 200
    refused = Client().post(rival_link)
    assert refused.status_code == 409 and "already verified for another account" in refused.content.decode()
    rival.refresh_from_db()
    assert rival.status == "pending"


def test_the_operator_approves_a_claim_in_the_admin(superuser, claim):
    operator = Client()
    operator.force_login(superuser)
    response = operator.post("/admin/billing/ssodomain/", {"action": "approve", "_selected_action": [claim.pk]})
    assert response.status_code == 302
    claim.refresh_from_db()
    assert claim.status == "verified" and claim.verified_by == "root@ops.test"
    entry = AuditEntry.objects.get(action="sso.domain_verified")
    assert entry.account == claim.config.account and entry.after["method"] == "operator"


def test_claims_dropped_from_the_settings_go_and_are_audited(client_as, alice, claim):
    from billing.accounts.services import sso_config_update

    config = claim.config
    sso_config_update(account=config.account, actor=alice, enabled=True, issuer=config.issuer,
                      client_id=config.client_id, client_secret=None, allowed_domains=["acme.test", "acme.de"],
                      default_role="member", password_login_disabled=False)
    assert list(config.domains.values_list("domain", "status")) == [("acme.de", "pending"), ("acme.test", "verified")]
    actions = set(AuditEntry.objects.values_list("action", "target"))
    assert {("sso.domain_removed", "acme.fr"), ("sso.domain_claimed", "acme.de")} <= actions
    assert Account.objects.filter(slug="acme").exists()


def test_a_newline_in_the_account_name_does_not_break_the_mail(client_as, alice, claim):
    Account.objects.filter(slug="acme").update(name="Acme\r\nBcc: victim@example.test")
    response = client_as(alice).post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "admin"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert "\n" not in message.subject and "\r" not in message.subject and message.to == ["admin@acme.fr"]


def test_a_silent_mail_server_holds_the_confirmation_only_for_email_timeout(client_as, alice, claim, silent_smtp):
    owner = client_as(alice)
    started = time.monotonic()
    response = owner.post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "admin"})
    assert time.monotonic() - started < 5  # EMAIL_TIMEOUT (0.5 s): the claim's row lock waits no longer
    assert "could not be sent" in owner.get(response.url).content.decode()


def test_a_mail_that_cannot_be_built_keeps_the_live_link(client_as, alice, claim, monkeypatch):
    owner = client_as(alice)
    owner.post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "admin"})
    [live] = (_link(m) for m in mail.outbox)
    _after_the_cool_down()

    def refuse(*args, **kwargs):
        raise BadHeaderError("Header values can't contain newlines")

    monkeypatch.setattr(sso_domains, "send_mail", refuse)
    response = owner.post(f"/a/acme/settings/sso/domains/{claim.pk}/confirm", {"mailbox": "postmaster"})
    assert response.status_code == 302
    shown = owner.get(response.url).content.decode()
    assert "could not be sent" in shown and "admin@acme.fr" not in [m.to[0] for m in mail.outbox[1:]]
    assert Client().post(live).status_code == 200  # the link mailed before still works
    claim.refresh_from_db()
    assert claim.status == "verified"


def test_confirmation_mails_are_rate_limited(client_as, alice, sso_config, monkeypatch):
    owner = client_as(alice)
    claim = SsoDomain.objects.create(config=sso_config, domain="acme.fr")
    url = f"/a/acme/settings/sso/domains/{claim.pk}/confirm"
    owner.post(url, {"mailbox": "admin"})
    again = owner.post(url, {"mailbox": "postmaster"}, follow=True).content.decode()
    assert len(mail.outbox) == 1 and "wait" in again and "10 minutes" in again
    monkeypatch.setattr(sso_domains, "CONFIRMATION_DAILY_CAP", 3)
    others = [SsoDomain.objects.create(config=sso_config, domain=f"acme{n}.fr") for n in range(3)]
    for other in others[:2]:
        owner.post(f"/a/acme/settings/sso/domains/{other.pk}/confirm", {"mailbox": "admin"})
    capped = owner.post(f"/a/acme/settings/sso/domains/{others[2].pk}/confirm", {"mailbox": "admin"},
                        follow=True).content.decode()
    assert len(mail.outbox) == 3 and "3 confirmation mails" in capped
