"""OAuth2Auth: tokens obtained lazily, renewed once on 401, every grant's secrets kept out of logs and errors."""

import logging
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apisync.http import ApiClient, FatalError, OAuth2Auth, RetriableError
from apisync.settings import OAuthSettings

TOKEN_URL = "https://login.example/services/oauth2/token"
SECRET, REFRESH = "client-secret-s3cr3t", "refresh-r3fr3sh"
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def _key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


PRIVATE, PUBLIC = _key()
SETTINGS = {
    "refresh_token": OAuthSettings("refresh_token", TOKEN_URL, "cid", client_secret=SECRET, refresh_token=REFRESH),
    "client_credentials": OAuthSettings("client_credentials", TOKEN_URL, "cid", client_secret=SECRET),
    "jwt_bearer": OAuthSettings("jwt_bearer", TOKEN_URL, "cid", private_key=PRIVATE, username="u@x",
                                audience="https://login.salesforce.com"),
}


class FakeSalesforce:
    """A token endpoint and an API whose sessions die after `uses` requests."""

    def __init__(self, uses: int = 2, token_status: int = 200) -> None:
        self.uses, self.token_status = uses, token_status
        self.issued: list[str] = []
        self.forms: list[dict] = []
        self.left = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.forms.append(form)
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": "invalid_grant",
                                                               "error_description": f"bad {REFRESH} {SECRET}"})
            self.issued.append(f"00Dx!tok{len(self.issued)}")
            self.left = self.uses
            return httpx.Response(200, json={"access_token": self.issued[-1], "instance_url": "https://x"})
        if request.headers.get("authorization") != f"Bearer {self.issued[-1] if self.issued else ''}" \
                or self.left <= 0:
            return httpx.Response(401, json=EXPIRED)
        self.left -= 1
        return httpx.Response(200, json={"records": []})


def _client(api: FakeSalesforce, flow: str = "refresh_token") -> ApiClient:
    return ApiClient("salesforce", "https://x.my.salesforce.com", OAuth2Auth("salesforce", SETTINGS[flow]),
                     transport=httpx.MockTransport(api), max_retries=0, sleep=lambda s: None)


@pytest.mark.parametrize("flow", list(SETTINGS))
def test_each_flow_renews_an_expired_session_and_retries_once(flow):
    api = FakeSalesforce(uses=2)
    client = _client(api, flow)
    for _ in range(7):
        assert client.get_json("/services/data/v61.0/query").data == {"records": []}
    assert len(api.issued) == 4  # first use, then one renewal per 2 requests
    grant = api.forms[0]
    if flow == "jwt_bearer":
        claims = jwt.decode(grant["assertion"], PUBLIC, algorithms=["RS256"], audience="https://login.salesforce.com")
        assert (grant["grant_type"], claims["iss"], claims["sub"]) == (
            "urn:ietf:params:oauth:grant-type:jwt-bearer", "cid", "u@x")
    else:
        assert grant["grant_type"] == flow and grant["client_id"] == "cid"


def test_a_second_401_is_fatal_not_a_loop():
    api = FakeSalesforce(uses=0)  # every session is dead on arrival
    with pytest.raises(FatalError) as raised:
        _client(api).get_json("/services/data/v61.0/query")
    assert raised.value.status == 401 and len(api.issued) == 2


@pytest.mark.parametrize(("status", "error"), [(400, FatalError), (503, RetriableError)])
def test_a_refused_grant_names_the_error_never_the_secrets(status, error, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(error) as raised:
        _client(FakeSalesforce(token_status=status)).get_json("/services/data/v61.0/query")
    text = str(raised.value)
    assert "invalid_grant" in text and "/services/oauth2/token" in text
    assert SECRET not in text and REFRESH not in text


@pytest.mark.parametrize("flow", list(SETTINGS))
def test_tokens_and_grant_secrets_never_reach_logs_reprs_or_errors(flow, caplog):
    caplog.set_level(logging.DEBUG)
    api = FakeSalesforce(uses=1)
    auth = OAuth2Auth("salesforce", SETTINGS[flow])
    client = ApiClient("salesforce", "https://x", auth, transport=httpx.MockTransport(api), max_retries=0)
    for _ in range(3):
        client.get_json("/services/data/v61.0/query")
    logging.getLogger("httpx").info("sent Bearer %s with %s", api.issued[-1], SECRET)  # a careless log line
    api.uses, api.left = 0, 0
    with pytest.raises(FatalError) as raised:
        client.get_json("/services/data/v61.0/query")
    shown = caplog.text + str(raised.value) + repr(auth) + repr(SETTINGS[flow]) + str(SETTINGS[flow])
    for secret in (*api.issued, SECRET, REFRESH, PRIVATE, PRIVATE.splitlines()[1]):
        assert secret not in shown
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(auth)


@pytest.mark.parametrize(("fields", "missing"), [
    ({"flow": "refresh_token", "client_id": "c"}, "refresh_token"),
    ({"flow": "client_credentials", "client_id": "c"}, "client_secret"),
    ({"flow": "jwt_bearer", "client_id": "c", "audience": "a"}, "private_key, username"),
    ({"flow": "password", "client_id": "c"}, "unknown OAuth flow"),
])
def test_incomplete_settings_name_the_missing_field(fields, missing):
    with pytest.raises(ValueError, match=missing):
        OAuthSettings(token_url=TOKEN_URL, **fields)


def test_a_bad_private_key_says_so_without_the_key():
    settings = OAuthSettings("jwt_bearer", TOKEN_URL, "cid", private_key="-----BEGIN nonsense", username="u",
                             audience="a")
    with pytest.raises(FatalError) as raised:
        ApiClient("salesforce", "https://x", OAuth2Auth("salesforce", settings),
                  transport=httpx.MockTransport(FakeSalesforce()), max_retries=0).get("/q")
    assert "private key" in str(raised.value) and "nonsense" not in str(raised.value)
