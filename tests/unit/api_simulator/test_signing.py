"""Webhook signatures match each provider's documented scheme."""
import base64
import hashlib
import hmac

from api_simulator.signing import github_signature, standard_webhooks_signature, stripe_signature


def test_github_public_test_vector():
    # docs.github.com "Validating webhook deliveries": the published example.
    assert github_signature(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


def test_stripe_signs_timestamp_dot_body_once_per_secret():
    header = stripe_signature(b'{"id":"evt_1"}', ["whsec_a", "whsec_b"], 1700000000)
    parts = header.split(",")
    assert parts[0] == "t=1700000000"
    expected = [hmac.new(s, b'1700000000.{"id":"evt_1"}', hashlib.sha256).hexdigest() for s in (b"whsec_a", b"whsec_b")]
    assert parts[1:] == [f"v1={e}" for e in expected]


def test_standard_webhooks_uses_decoded_key_and_id_ts_body():
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    signature = standard_webhooks_signature("msg_1", 1700000000, b"{}", [secret])
    digest = hmac.new(key, b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(digest).decode()
