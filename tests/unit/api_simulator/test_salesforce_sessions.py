"""Salesforce in the simulator: expiring sessions and the token endpoint, late commits, Outbound Messaging."""

import time
import warnings

from api_simulator.config import Credentials
from api_simulator.salesforce_outbound import acknowledged, envelope, notification
from api_simulator.timefmt import iso_time as _iso
from api_simulator.timefmt import salesforce_time as _sf

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

Q = "/services/data/v61.0/query"
CREDS = Credentials()


def _grant(client, **form):
    return client.post("/services/oauth2/token", data=form, headers={"Authorization": ""})


def test_issued_sessions_expire_and_refresh_issues_new_ones(client, sim):
    client.post("/_admin/config", json={"salesforce_session_lifetime_s": 60})
    answer = _grant(client, grant_type="refresh_token", client_id=CREDS.salesforce_client_id,
                    refresh_token=CREDS.salesforce_refresh_token)
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    assert client.get(Q, params={"q": "SELECT Id FROM Account LIMIT 1"}, headers=auth).status_code == 200
    sim.clock.advance(61)
    expired = client.get(Q, params={"q": "SELECT Id FROM Account LIMIT 1"}, headers=auth)
    assert expired.status_code == 401 and expired.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_refused_grants_answer_oauth_errors(client):
    assert _grant(client, grant_type="refresh_token", client_id="nope").json()["error"] == "invalid_client_id"
    assert _grant(client, grant_type="client_credentials", client_id=CREDS.salesforce_client_id,
                  client_secret="wrong").json()["error"] == "invalid_client"
    assert _grant(client, grant_type="refresh_token", client_id=CREDS.salesforce_client_id,
                  refresh_token="stale").json()["error_description"] == "expired access/refresh token"
    assert _grant(client, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                  assertion="x.y.z").json()["error"] == "invalid_grant"
    assert _grant(client, grant_type="password").json()["error"] == "unsupported_grant_type"


def test_a_late_commit_hides_its_row_and_holds_latest_date_covered(salesforce, sim):
    salesforce.post("/_admin/config", json={"salesforce_late_commits": {"share": 1.0, "lag_s": 300}})
    mutation = sim.models["salesforce"].mutate("update", "account")
    stamp = mutation.version // 1000
    assert sim.truth("salesforce")["objects"]["account"][mutation.id]["version"] < mutation.version
    sim.clock.advance(240)
    window = {"start": _iso(stamp - 3600), "end": _iso(sim.clock.now_s())}
    covered = salesforce.get("/services/data/v61.0/sobjects/Account/updated/", params=window).json()
    assert covered["latestDateCovered"] == _sf(stamp // 60 * 60)
    sim.clock.advance(61)
    assert sim.truth("salesforce")["objects"]["account"][mutation.id]["version"] == mutation.version


def test_a_due_transaction_commits_and_pushes_without_any_reader(app, sim):
    with TestClient(app, base_url="http://sim.test"):  # runs the lifespan: the background committer
        sim.runtime["salesforce_late_commits"] = {"share": 1.0, "lag_s": 3}
        pushed: list = []
        sim.webhooks.submit = pushed.extend  # what the committer hands to the dispatcher
        model = sim.models["salesforce"]
        model.mutate("update", "account")
        assert len(model.pending) == 1 and model.outbox == []
        sim.clock.advance(4)
        # The committer runs every 0.5 s; nobody queries meanwhile. It empties `pending` before it hands the
        # pushes over, so wait for both. The deadline only ends a stuck committer.
        deadline = time.monotonic() + 60
        while (model.pending or len(pushed) < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert model.pending == []
        assert [m.event for m in pushed] == ["account.updated", "outbound"]  # its pushes went out


def test_outbound_messages_batch_notifications_and_need_an_ack():
    row = {"attributes": {"type": "Account"}, "Id": "001x", "IsDeleted": False, "Phone": None,
           "SystemModstamp": "2026-11-26T14:53:32.000+0000"}
    body = envelope("00Dorg", "https://x", [notification(row, f"04l{i}", ("Id", "IsDeleted", "Phone",
                                                                          "SystemModstamp")) for i in range(3)])
    assert body.count(b"<Notification>") == 3 and b'<sf:Phone xsi:nil="true"/>' in body
    assert b"<sf:SystemModstamp>2026-11-26T14:53:32.000Z</sf:SystemModstamp>" in body
    assert acknowledged(200, b"<soapenv:Body><notificationsResponse><Ack>true</Ack>") is True
    assert acknowledged(200, b"<ok/>") is False and acknowledged(500, b"<Ack>true</Ack>") is False

