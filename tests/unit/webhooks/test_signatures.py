"""Signature schemes: public vectors, rotation, tolerance, malformed headers."""

import base64
import hashlib
import hmac

import pytest

from apisync.apis.github.webhook import GitHubSignature
from apisync.apis.stripe.webhook import StripeSignature
from apisync.webhooks.signatures import InvalidSignature, MalformedSignature, StandardWebhooksSignature
from webhook_signing import sign_github, sign_standard, sign_stripe

NOW = 1_795_704_812
BODY = b'{"id":"evt_1","object":"event"}'
SW_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_github_public_test_vector():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    header = sign_github("It's a Secret to Everybody", b"Hello, World!")
    assert header == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    GitHubSignature(("It's a Secret to Everybody",)).verify(b"Hello, World!", {"X-Hub-Signature-256": header}, NOW)


def test_stripe_signature_is_hmac_over_timestamp_dot_body():
    header = sign_stripe("whsec_test", BODY, NOW)
    expected = hmac.new(b"whsec_test", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    StripeSignature(("whsec_test",)).verify(BODY, {"stripe-signature": header}, NOW + 10)


def test_standard_webhooks_signature_uses_decoded_secret():
    header = sign_standard(SW_SECRET, "msg_1", NOW, BODY)
    key = b"0123456789abcdef0123456789abcdef"
    digest = hmac.new(key, f"msg_1.{NOW}.".encode() + BODY, hashlib.sha256).digest()
    assert header == "v1," + base64.b64encode(digest).decode()
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": header}
    StandardWebhooksSignature((SW_SECRET,)).verify(BODY, headers, NOW)


def test_rotation_any_active_secret_and_any_v1_matches():
    old_sig = sign_stripe("whsec_old", BODY, NOW).split(",")[1]
    header = f"t={NOW},v1={'0' * 64},{old_sig}"
    StripeSignature(("whsec_new", "whsec_old")).verify(BODY, {"Stripe-Signature": header}, NOW)
    with pytest.raises(InvalidSignature):
        StripeSignature(("whsec_new",)).verify(BODY, {"Stripe-Signature": header}, NOW)
    sw_header = "v1,AAAA " + sign_standard(SW_SECRET, "m", NOW, BODY)
    headers = {"webhook-id": "m", "webhook-timestamp": str(NOW), "webhook-signature": sw_header}
    StandardWebhooksSignature(("whsec_" + base64.b64encode(b"other").decode(), SW_SECRET)).verify(BODY, headers, NOW)


def _sw_headers(ts=NOW, body=BODY, msg_id="m1"):
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard(SW_SECRET, msg_id, ts, body)}


@pytest.mark.parametrize("scheme, body, headers, now, error", [
    (StripeSignature(("s",)), BODY, {"Stripe-Signature": sign_stripe("s", BODY, NOW)}, NOW + 301, InvalidSignature),
    (StripeSignature(("s",)), BODY + b" ", {"Stripe-Signature": sign_stripe("s", BODY, NOW)}, NOW, InvalidSignature),
    (StripeSignature(("s",)), BODY, {"Stripe-Signature": sign_stripe("x", BODY, NOW)}, NOW, InvalidSignature),
    (StripeSignature(("s",)), BODY, {}, NOW, MalformedSignature),
    (StripeSignature(("s",)), BODY, {"Stripe-Signature": f"t={NOW}"}, NOW, MalformedSignature),
    (StripeSignature(("s",)), BODY, {"Stripe-Signature": "t=abc,v1=00"}, NOW, MalformedSignature),
    (StripeSignature(("s",)), BODY, {"Stripe-Signature": f"t={NOW},v1=zz"}, NOW, MalformedSignature),
    (GitHubSignature(("s",)), BODY, {}, NOW, MalformedSignature),
    (GitHubSignature(("s",)), BODY, {"X-Hub-Signature-256": "sha1=abcd"}, NOW, MalformedSignature),
    (GitHubSignature(("s",)), BODY, {"X-Hub-Signature-256": sign_github("t", BODY)}, NOW, InvalidSignature),
    (GitHubSignature(("s",)), b"x" + BODY, {"X-Hub-Signature-256": sign_github("s", BODY)}, NOW, InvalidSignature),
    (StandardWebhooksSignature((SW_SECRET,)), BODY, _sw_headers(), NOW + 301, InvalidSignature),
    (StandardWebhooksSignature((SW_SECRET,)), BODY, _sw_headers(), NOW - 301, InvalidSignature),
    (StandardWebhooksSignature((SW_SECRET,)), b"{}", _sw_headers(), NOW, InvalidSignature),
    (StandardWebhooksSignature((SW_SECRET,)), BODY, {**_sw_headers(), "webhook-id": "m2"}, NOW, InvalidSignature),
    (StandardWebhooksSignature((SW_SECRET,)), BODY, {"webhook-id": "m1", "webhook-timestamp": str(NOW)}, NOW,
     MalformedSignature),
    (StandardWebhooksSignature((SW_SECRET,)), BODY, {**_sw_headers(), "webhook-signature": "v1,@@@"}, NOW,
     MalformedSignature),
    (StandardWebhooksSignature((SW_SECRET,)), BODY, {**_sw_headers(), "webhook-timestamp": "soon"}, NOW,
     MalformedSignature),
], ids=["stripe-too-old", "stripe-body-changed", "stripe-wrong-secret", "stripe-missing", "stripe-no-v1",
        "stripe-bad-t", "stripe-not-hex", "github-missing", "github-sha1", "github-wrong-secret",
        "github-body-changed", "sw-too-old", "sw-too-new", "sw-body-changed", "sw-id-changed", "sw-missing-sig",
        "sw-not-base64", "sw-bad-ts"])
def test_rejections(scheme, body, headers, now, error):
    with pytest.raises(error) as caught:
        scheme.verify(body, headers, now)
    assert caught.value.status == (400 if error is MalformedSignature else 401)


def test_stripe_tolerance_boundary_and_future_timestamp():
    header = {"Stripe-Signature": sign_stripe("s", BODY, NOW)}
    StripeSignature(("s",)).verify(BODY, header, NOW + 300)
    StripeSignature(("s",), tolerance_s=10).verify(BODY, header, NOW - 3600)  # Stripe only rejects the past
    with pytest.raises(InvalidSignature):
        StripeSignature(("s",), tolerance_s=10).verify(BODY, header, NOW + 11)


def test_errors_and_repr_never_show_secrets():
    scheme = StripeSignature(("whsec_supersecret",))
    with pytest.raises(InvalidSignature) as caught:
        scheme.verify(BODY, {"Stripe-Signature": sign_stripe("whsec_other", BODY, NOW)}, NOW)
    assert "supersecret" not in str(caught.value)
    assert "supersecret" not in repr(scheme)
