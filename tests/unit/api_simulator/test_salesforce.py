"""Salesforce: SOQL cursor on (SystemModstamp, Id), batches, queryAll, replication, limits."""
import pytest

Q = "/services/data/v61.0/query"


def run(client, soql, path=Q, batch=None):
    headers = {"Sforce-Query-Options": f"batchSize={batch}"} if batch else {}
    answer = client.get(path, params={"q": soql}, headers=headers).json()
    records, batches = list(answer["records"]), 1
    while not answer["done"]:
        answer = client.get(answer["nextRecordsUrl"], headers=headers).json()
        records += answer["records"]
        batches += 1
    return records, batches


@pytest.fixture
def big(client, salesforce):
    client.post("/_admin/reset", json={"seed": 3, "objects": 450})
    return salesforce


def test_batches_of_at_most_2000_or_batch_size(big):
    records, batches = run(big, "SELECT Id FROM Contact", batch=200)
    assert len(records) == 450 and batches == 3


def test_keyset_cursor_on_modstamp_and_id_finds_every_row_once(big, sim):
    rows, _ = run(big, "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp, Id")
    assert [(r["SystemModstamp"], r["Id"]) for r in rows] == sorted((r["SystemModstamp"], r["Id"]) for r in rows)
    pivot = rows[100]
    stamp = pivot["SystemModstamp"].replace(".000+0000", "Z")
    soql = (f"SELECT Id FROM Account WHERE (SystemModstamp = {stamp} AND Id > '{pivot['Id']}') "
            f"OR SystemModstamp > {stamp} ORDER BY SystemModstamp, Id LIMIT 1000")
    after, _ = run(big, soql)
    assert [r["Id"] for r in after] == [r["Id"] for r in rows[101:]]


def test_query_hides_deleted_rows_query_all_shows_them(salesforce, sim):
    mutation = sim.models["salesforce"].mutate("delete", "contact")
    live, _ = run(salesforce, "SELECT Id FROM Contact")
    every, _ = run(salesforce, "SELECT Id, IsDeleted FROM Contact", path="/services/data/v61.0/queryAll")
    assert mutation.id not in {r["Id"] for r in live}
    assert {"Id": mutation.id, "IsDeleted": True} in [{k: r[k] for k in ("Id", "IsDeleted")} for r in every]
    assert salesforce.get(f"/services/data/v61.0/sobjects/Contact/{mutation.id}").status_code == 404


@pytest.mark.parametrize("soql, code", [
    ("SELECT Nope FROM Account", "INVALID_FIELD"),
    ("SELECT Id FROM Widget", "INVALID_TYPE"),
    ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
    ("SELECT Id FROM Account LIMIT x", "MALFORMED_QUERY"),
])
def test_bad_queries_get_salesforce_errors(salesforce, soql, code):
    answer = salesforce.get(Q, params={"q": soql})
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == code


def test_updated_and_deleted_windows(salesforce, sim):
    start = sim.clock.now_s() - 3600
    sim.clock.advance(120)
    upd = sim.models["salesforce"].mutate("update", "account")
    gone = sim.models["salesforce"].mutate("delete", "account")
    sim.clock.advance(120)
    window = {"start": _iso(start), "end": _iso(sim.clock.now_s() + 60)}
    updated = salesforce.get("/services/data/v61.0/sobjects/Account/updated/", params=window).json()
    assert upd.id in updated["ids"] and gone.id not in updated["ids"]
    assert updated["latestDateCovered"].endswith(":00.000+0000")
    deleted = salesforce.get("/services/data/v61.0/sobjects/Account/deleted/", params=window).json()
    assert [d["id"] for d in deleted["deletedRecords"]] == [gone.id]


def test_old_start_is_invalid_replication_date(salesforce, sim):
    start = sim.clock.now_s() - 3600
    sim.clock.advance(16 * 86400)
    window = {"start": _iso(start), "end": _iso(sim.clock.now_s())}
    answer = salesforce.get("/services/data/v61.0/sobjects/Account/deleted/", params=window)
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert salesforce.get("/services/data/v61.0/sobjects/Account/updated/", params=window).status_code == 200


def test_limit_info_header_and_request_limit_exceeded(salesforce, client):
    client.post("/_admin/config", json={"rate_limits": {"salesforce": {"per_day": 2}}})
    first = salesforce.get(Q, params={"q": "SELECT Id FROM Account LIMIT 1"})
    assert first.headers["sforce-limit-info"] == "api-usage=1/2"
    salesforce.get(Q, params={"q": "SELECT Id FROM Account LIMIT 1"})
    over = salesforce.get(Q, params={"q": "SELECT Id FROM Account LIMIT 1"})
    assert over.status_code == 403 and over.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_bad_token_is_invalid_session(client):
    answer = client.get(Q, params={"q": "SELECT Id FROM Account"}, headers={"Authorization": "Bearer x"})
    assert answer.status_code == 401 and answer.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def _iso(epoch):
    from api_simulator.timefmt import github_time
    return github_time(epoch)
