"""The simulated token endpoint rotates refresh tokens like a Salesforce app with rotation on (the default).

Salesforce Help 005316711: a new refresh token per refresh, the one sent invalidated, and "any attempted
reuse of an invalidated refresh token results in the immediate revocation of the current refresh token and
all associated access tokens".
"""

from api_simulator.config import Credentials

CREDS = Credentials()
Q = "/services/data/v61.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}
EXPIRED = "expired access/refresh token"


def _refresh(client, token):
    return client.post("/services/oauth2/token", headers={"Authorization": ""}, data={
        "grant_type": "refresh_token", "client_id": CREDS.salesforce_client_id, "refresh_token": token})


def _works(client, access) -> bool:
    return client.get(Q, params=SOQL, headers={"Authorization": f"Bearer {access}"}).status_code == 200


def test_each_refresh_answers_a_new_refresh_token_and_invalidates_the_one_sent(client):
    first = _refresh(client, CREDS.salesforce_refresh_token).json()
    second = _refresh(client, first["refresh_token"]).json()
    assert len({CREDS.salesforce_refresh_token, first["refresh_token"], second["refresh_token"]}) == 3
    assert _works(client, first["access_token"]) and _works(client, second["access_token"])
    assert client.get("/_admin/salesforce/oauth").json() == {
        "rotation": True, "rotations": 2, "revocations": 0, "live": True, "instance_url": ""}


def test_reusing_a_rotated_token_revokes_the_family_and_its_access_tokens(client):
    first = _refresh(client, CREDS.salesforce_refresh_token).json()
    second = _refresh(client, first["refresh_token"]).json()
    reused = _refresh(client, first["refresh_token"])
    assert reused.status_code == 400 and reused.json() == {"error": "invalid_grant", "error_description": EXPIRED}
    assert _refresh(client, second["refresh_token"]).json()["error_description"] == EXPIRED  # the live one too
    assert not _works(client, first["access_token"]) and not _works(client, second["access_token"])
    assert client.get("/_admin/salesforce/oauth").json()["revocations"] == 1


def test_other_grants_sessions_survive_a_revoked_family(client):
    issued = client.post("/services/oauth2/token", headers={"Authorization": ""}, data={
        "grant_type": "client_credentials", "client_id": CREDS.salesforce_client_id,
        "client_secret": CREDS.salesforce_client_secret}).json()
    first = _refresh(client, CREDS.salesforce_refresh_token).json()
    _refresh(client, first["refresh_token"])
    _refresh(client, CREDS.salesforce_refresh_token)  # reuse
    assert _works(client, issued["access_token"])


def test_with_rotation_off_the_same_refresh_token_keeps_working(client):
    assert client.post("/_admin/salesforce/oauth", json={"rotation": False}).json()["rotation"] is False
    for _ in range(3):
        answer = _refresh(client, CREDS.salesforce_refresh_token).json()
        assert "refresh_token" not in answer and _works(client, answer["access_token"])


def test_an_org_move_changes_the_instance_url_of_token_answers(client):
    assert _refresh(client, CREDS.salesforce_refresh_token).json()["instance_url"] == "http://sim.test"
    client.post("/_admin/salesforce/oauth", json={"instance_url": "https://na7.sim.test/"})
    answer = client.post("/services/oauth2/token", headers={"Authorization": ""}, data={
        "grant_type": "client_credentials", "client_id": CREDS.salesforce_client_id,
        "client_secret": CREDS.salesforce_client_secret}).json()
    assert answer["instance_url"] == "https://na7.sim.test"


def test_a_reset_authorises_the_app_again(client, sim):
    first = _refresh(client, CREDS.salesforce_refresh_token).json()
    _refresh(client, CREDS.salesforce_refresh_token)  # reuse: revoked
    assert _refresh(client, first["refresh_token"]).status_code == 400
    sim.reset(7, 5)
    assert _refresh(client, CREDS.salesforce_refresh_token).status_code == 200


def test_a_malformed_admin_patch_is_refused(client):
    assert client.post("/_admin/salesforce/oauth", json={"rotation": "yes"}).status_code == 400
    assert client.post("/_admin/salesforce/oauth", content=b"[").status_code == 400
