"""HubSpot CRM: everything apisync knows about it, declared in `spec.SPEC` (registered in `apisync.apis`)."""

from apisync.apis.hubspot.spec import SPEC

__all__ = ["SPEC"]
