"""First run and settings: sign-in that forgives an address's case and keeps it after a wrong password,
password reset by email, error pages of the app's own, safer defaults and the navigation's switcher and links."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from billing.accounts.forms import AccountSettingsForm, SsoConfigForm, timezone_names

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def test_sign_in_matches_the_address_whatever_its_case(alice):
    response = Client().post("/login/", {"username": "  ALICE@Acme.Test", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_wrong_password_keeps_the_email_and_says_email(alice):
    response = Client().post("/login/", {"username": "alice@acme.test", "password": "nope"})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'value="alice@acme.test"' in page
    assert "That email and password do not match." in page and "username and password" not in page
    assert '<label for="id_username">Email</label>' in page
    assert "Forgot your password?" in page


def test_the_throttle_counts_case_variants_as_one_address(alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    Client().post("/login/", {"username": "alice@acme.test", "password": "nope"})
    Client().post("/login/", {"username": "ALICE@acme.test", "password": "nope"})
    assert Client().post("/login/", {"username": "Alice@ACME.test", "password": PASSWORD}).status_code == 429


def test_password_reset_by_email_answers_alike_for_unknown_addresses(alice, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://tokonomics.example.test"
    unknown = Client().post("/password-reset/", {"email": "nobody@acme.test"})
    known = Client().post("/password-reset/", {"email": "Alice@Acme.test"})
    assert unknown.status_code == known.status_code == 302
    assert unknown["Location"] == known["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@acme.test"]
    link = re.search(r"https://tokonomics\.example\.test(/password-reset/\S+/)", mail.outbox[0].body)
    assert link, mail.outbox[0].body

    client = Client()
    form = client.get(link.group(1), follow=True)  # Django moves the token into the session, then shows the form
    assert "Choose a new password" in form.content.decode()
    new = "a brand new long passphrase"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    assert Client().post("/login/", {"username": "alice@acme.test", "password": new}).status_code == 302


def test_unknown_pages_get_the_apps_404_without_debug_details(alice, settings):
    settings.DEBUG = False
    client = Client()
    client.force_login(alice)
    response = client.get("/a/acme/no-such-page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "Page not found" in page and "Your accounts" in page
    assert "URLconf" not in page and "Django" not in page


def test_a_refusal_gets_a_403_page_with_the_apps_navigation(acme, bob, settings):
    settings.DEBUG = False
    client = Client()
    client.force_login(bob)  # a member: the settings page is for admins and owners
    response = client.get("/a/acme/settings/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "You can't do that here" in page
    assert 'href="/a/acme/keys/"' in page and 'href="/a/acme/budgets/"' in page  # the navigation


def test_the_sso_form_starts_unticked_with_new_people_as_viewers():
    form = SsoConfigForm(config=None)
    html = str(form["enabled"])
    assert "checked" not in html
    assert form["default_role"].value() == "viewer"


def test_the_time_zone_picker_lists_real_zones_and_validates(acme):
    names = timezone_names()
    assert "Europe/Berlin" in names and "UTC" in names
    assert not {"Factory", "localtime", "posixrules", "Etc/GMT+5", "US/Eastern", "EST5EDT"} & set(names)
    rendered = str(AccountSettingsForm(account=acme)["timezone"])
    assert 'list="id_timezone_list"' in rendered and '<option value="Europe/Berlin">' in rendered

    data = {"name": "Acme", "retention_days": "", "on_redis_unavailable": acme.on_redis_unavailable}
    assert AccountSettingsForm({**data, "timezone": "Europe/Berlin"}, account=acme).is_valid()
    refused = AccountSettingsForm({**data, "timezone": "Factory"}, account=acme)
    assert not refused.is_valid() and "Factory is not a time zone" in str(refused.errors["timezone"])


def test_an_alias_already_chosen_stays_valid(acme):
    acme.timezone = "US/Eastern"
    data = {"name": "Acme", "timezone": "US/Eastern", "retention_days": "",
            "on_redis_unavailable": acme.on_redis_unavailable}
    assert AccountSettingsForm(data, account=acme).is_valid()


def test_the_navigation_switches_accounts_and_links_the_api_docs(alice, globex):
    user_with_seat_on(alice, globex)
    client = Client()
    client.force_login(alice)
    page = client.get("/a/acme/").content.decode()
    switcher = page[page.index('<details class="switcher">'):page.index("</details>")]
    assert 'href="/a/globex/"' in switcher and "Globex" in switcher and 'href="/a/acme/"' not in switcher
    assert 'href="/api/v1/docs"' in page
    assert 'aria-current="page"' in page


def test_one_account_shows_no_switcher(alice):
    client = Client()
    client.force_login(alice)
    assert "switcher" not in client.get("/a/acme/").content.decode()


def user_with_seat_on(user, account) -> None:
    from billing.models import Seat

    Seat.objects.create(account=account, user=user, role="member")



def test_an_empty_account_gets_a_checklist_with_its_proxy_url(alice, acme, settings):
    settings.SITE_URL = "https://llm.acme.test"
    client = Client()
    client.force_login(alice)
    page = client.get("/a/acme/").content.decode()
    checklist = page[page.index('id="first-run"'):page.index("</section>")]
    for step in ("Add a provider", "Create a key", "Make a first call", "Set a budget", "Add an alert channel"):
        assert f">{step}</a>" in checklist  # a link: not done yet
    assert "https://llm.acme.test/proxy/openai/chat/completions" in checklist  # curl
    assert 'OpenAI(base_url="https://llm.acme.test/proxy/openai"' in checklist.replace("&quot;", '"')  # the SDK
    assert 'href="/api/v1/docs"' in checklist


def test_the_checklist_ticks_steps_from_data_and_goes_when_done(alice, acme, settings):
    from alerts.models import AlertChannel
    from billing.models import Budget
    from billing.usage.ledger import usage_record_batch

    from ..support import KEY, make_key

    client = Client()
    client.force_login(alice)
    make_key(acme, KEY)
    Budget.objects.create(account=acme, scope="account", period="month", limit_usd=5, hard=True)
    page = client.get("/a/acme/").content.decode()
    assert "<s>Create a key</s>" in page and "<s>Set a budget</s>" in page and ">Add a provider</a>" in page

    from proxy.models import ProviderEndpoint

    endpoint = ProviderEndpoint(account=acme, slug="anthropic", wire_format="anthropic",
                                base_url="https://api.anthropic.com", pricing_provider="anthropic")
    endpoint.set_credential("sk-ant-x")
    endpoint.save()
    AlertChannel.objects.create(account=acme, kind="webhook", name="ops", url="https://hooks.example.test/x")
    page = client.get("/a/acme/").content.decode()
    assert "/proxy/anthropic/v1/messages" in page and ">Make a first call</a>" in page

    usage_record_batch(events=[{
        "request_id": "req_first", "account_id": acme.pk, "key_id": None, "provider": "anthropic",
        "model": "claude-3-5-haiku-latest", "feature": "", "tenant": "", "environment": "production", "tags": {},
        "input_tokens": 10, "output_tokens": 5, "cost_usd": "0.0001", "status_code": 200, "latency_ms": 50,
        "created_at": 1_700_000_000.0}])
    assert 'id="first-run"' not in client.get("/a/acme/").content.decode()


def test_sign_in_also_finds_someone_by_email_when_the_username_differs(acme):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="ops", email="Ops@Acme.test", password=PASSWORD)
    response = Client().post("/login/", {"username": "ops@acme.test", "password": PASSWORD})
    assert response.status_code == 302


def test_password_reset_mails_an_address_at_most_three_times_an_hour_and_answers_alike(alice, settings):
    from billing.sso.reset_throttle import PER_EMAIL_PER_HOUR

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    answers = [Client().post("/password-reset/", {"email": "alice@acme.test"}) for _ in range(PER_EMAIL_PER_HOUR + 2)]
    assert {(a.status_code, a["Location"]) for a in answers} == {(302, "/password-reset/sent/")}
    assert len(mail.outbox) == PER_EMAIL_PER_HOUR


def test_password_reset_limits_one_client_across_addresses(alice, settings):
    from billing.sso.reset_throttle import PER_CLIENT_PER_HOUR

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(PER_CLIENT_PER_HOUR):
        client.post("/password-reset/", {"email": f"nobody{n}@acme.test"})
    client.post("/password-reset/", {"email": "alice@acme.test"})
    assert mail.outbox == []  # the client's hour is spent on unknown addresses: alice gets nothing from it
    Client(REMOTE_ADDR="203.0.113.10").post("/password-reset/", {"email": "alice@acme.test"})
    assert len(mail.outbox) == 1
