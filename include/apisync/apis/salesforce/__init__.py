"""Salesforce: everything apisync knows about it, declared in `spec.SPEC` (registered in `apisync.apis`)."""

from apisync.apis.salesforce.spec import SPEC

__all__ = ["SPEC"]
