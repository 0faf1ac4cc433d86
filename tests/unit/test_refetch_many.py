"""Re-fetching many objects: HubSpot batch read and Salesforce `WHERE Id IN` against the simulator, and the
guard's outcomes for list calls (a refused list call is asked object by object; a transient failure defers
every object of the call)."""

import warnings

import pytest

from api_simulator.app import create_app
from api_simulator.config import SimulatorConfig
from apisync.apis.hubspot.source import HubSpotSource
from apisync.apis.salesforce.source import SalesforceSource
from apisync.events import Observation
from apisync.fence import SourcePosition
from apisync.http import ApiClient, BearerTokenAuth, FatalError, RetriableError
from apisync.refetch_outcomes import GuardedRefetch, RefetchDeferred, RefetchRefused
from apisync.webhooks.refetch import source_refetcher

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKENS = {"hubspot": "pat-na1-apisync", "salesforce": "sf_apisync_token"}


@pytest.fixture
def sim_app():
    return create_app(SimulatorConfig(seed=7, objects=60, epoch=1_790_000_000))


def client_for(app, api, calls):
    transport = TestClient(app, base_url="http://sim.test")._transport

    class Counting(type(transport)):
        def handle_request(self, request):
            calls.append((request.method, request.url.path))
            return transport.handle_request(request)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(transport.__dict__)
    return ApiClient(api, "http://sim.test", BearerTokenAuth(TOKENS[api]), lane="webhook", transport=counting,
                     sleep=lambda s: None, max_retries=0)


def thin(api, collection, ident, version=1):
    return Observation(api, collection, str(ident), version, "webhook", "", None, thin=True)


def test_hubspot_batch_read_gives_live_objects_as_a_read_does_and_archived_ones_as_gone(sim_app):
    sim = sim_app.state.sim
    live = sorted(sim.models["hubspot"].live["contact"].entries)[:5]
    gone = sim.models["hubspot"].mutate("delete", "contact").id
    calls = []
    refetch = source_refetcher(HubSpotSource(), client_for(sim_app, "hubspot", calls))
    fresh = refetch.many([thin("hubspot", "contact", i) for i in [*live, gone, "999999"]])
    assert calls == [("POST", "/crm/v3/objects/contacts/batch/read")]  # one request for seven objects
    singles = [refetch(thin("hubspot", "contact", i)) for i in live]
    assert [(o.data, o.version) for o in fresh[:5]] == [(o.data, o.version) for o in singles]
    assert [o.deleted for o in fresh[5:]] == [True, True]


def test_hubspot_batch_read_refuses_more_than_100_inputs(sim_app):
    client = TestClient(sim_app, base_url="http://sim.test")
    answer = client.post("/crm/v3/objects/contacts/batch/read",
                         headers={"Authorization": f"Bearer {TOKENS['hubspot']}"},
                         json={"inputs": [{"id": str(i)} for i in range(101)]})
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"


def test_salesforce_refetch_many_is_one_soql_query_and_matches_the_walks_rows(sim_app):
    sim = sim_app.state.sim
    ids = sorted(sim.models["salesforce"].rows["Account"].entries)[:4]
    calls = []
    refetch = source_refetcher(SalesforceSource(), client_for(sim_app, "salesforce", calls))
    fresh = refetch.many([thin("salesforce", "account", i) for i in [*ids, "001000000000000AAA"]])
    assert [path.rsplit("/", 1)[1] for _m, path in calls] == ["query"]
    assert [o.id for o in fresh[:4]] == ids and all(o.data["Id"] == o.id and not o.deleted for o in fresh[:4])
    assert fresh[4].deleted


AT = [SourcePosition("hubspot.webhooks", 0, n) for n in range(4)]


class ListApi:
    """A re-fetch function with a list call whose outcome the test scripts."""

    per_call = 2

    def __init__(self, list_error=None, single_errors=None):
        self.list_error, self.single_errors, self.calls = list_error, single_errors or {}, []

    def __call__(self, obs):
        self.calls.append([obs.id])
        if obs.id in self.single_errors:
            raise self.single_errors[obs.id]
        return Observation(obs.api, obs.collection, obs.id, obs.version, "webhook", "", {"id": obs.id})

    def many(self, observations):
        self.calls.append([o.id for o in observations])
        if self.list_error:
            raise self.list_error
        return [Observation(o.api, o.collection, o.id, o.version, "webhook", "", {"id": o.id}) for o in observations]


def test_a_refused_list_call_is_asked_object_by_object_so_only_the_refused_object_dead_letters():
    api = ListApi(FatalError("hubspot", "POST", "/batch/read", 400, "bad id"),
                  {"b": FatalError("hubspot", "GET", "/b", 403, "forbidden")})
    outcomes = GuardedRefetch(api).many([(thin("hubspot", "contact", "a"), [AT[0]]),
                                         (thin("hubspot", "contact", "b"), [AT[1], AT[2]])])
    assert outcomes[0].data == {"id": "a"} and isinstance(outcomes[1], RefetchRefused)


def test_a_list_call_failing_transiently_defers_every_object_it_held():
    api = ListApi(RetriableError("hubspot", "POST", "/batch/read", 503, "down"))
    wanted = [(thin("hubspot", "contact", "a"), [AT[0], AT[1]]), (thin("hubspot", "contact", "b"), [AT[2]])]
    outcomes = GuardedRefetch(api).many(wanted)
    assert all(isinstance(o, RefetchDeferred) and "HTTP 503" in str(o) for o in outcomes)
    assert api.calls == [["a", "b"]]  # a transient failure is not asked again object by object


def test_a_refused_credential_in_a_list_call_stops():
    with pytest.raises(FatalError):
        GuardedRefetch(ListApi(FatalError("hubspot", "POST", "/batch/read", 401, "expired"))).many(
            [(thin("hubspot", "contact", "a"), [AT[0]]), (thin("hubspot", "contact", "b"), [AT[1]])])


def test_list_calls_hold_per_call_objects_of_one_collection():
    api = ListApi()
    GuardedRefetch(api).many([(thin("hubspot", c, i), [AT[0]]) for c, i in
                              [("contact", "a"), ("deal", "x"), ("contact", "b"), ("contact", "c")]])
    assert api.calls == [["a", "b"], ["c"], ["x"]]
