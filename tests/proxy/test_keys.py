import pytest
from django.db import connection

from proxy.keys import generate_key, hash_key, is_well_formed, visible_prefix
from proxy.models import ApiKey

pytestmark = pytest.mark.django_db


def test_generated_keys_are_well_formed_and_unique() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(is_well_formed(k) and len(k) >= 35 for k in keys)
    assert not is_well_formed("mk_short")
    assert not is_well_formed("sk-" + "a" * 40)


def test_no_plaintext_key_anywhere_in_the_database(acme) -> None:
    plaintext = generate_key()
    ApiKey.objects.create(account=acme, name="ci", key_hash=hash_key(plaintext), prefix=visible_prefix(plaintext))
    secret_part = plaintext[len(visible_prefix(plaintext)):]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM proxy_apikey")
        rows = cursor.fetchall()
    dump = repr(rows)
    assert secret_part not in dump
    assert plaintext not in dump
    assert hash_key(plaintext) in dump


def test_allowed_models_are_glob_patterns(acme) -> None:
    key = ApiKey(account=acme, name="k", allowed_models=["gpt-4o-mini", "claude-*"])
    assert key.allows_model("gpt-4o-mini")
    assert key.allows_model("claude-sonnet-4-5")
    assert not key.allows_model("gpt-4o")
    assert ApiKey(account=acme, name="all").allows_model("anything")
