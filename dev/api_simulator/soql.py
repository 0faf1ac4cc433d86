"""The SOQL subset apisync needs: SELECT fields FROM T [WHERE ...] [ORDER BY ...] [LIMIT n]; WHERE has
comparisons, `field IN (...)`, AND, OR, NOT and parentheses."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .timefmt import parse_iso

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
_TOKEN = re.compile(r"""\s*(?:
    (?P<dt>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))
  | (?P<date>\d{4}-\d\d-\d\d)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),*])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.X)
_OPS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b,
        "<": lambda a, b: a is not None and b is not None and a < b,
        "<=": lambda a, b: a is not None and b is not None and a <= b,
        ">": lambda a, b: a is not None and b is not None and a > b,
        ">=": lambda a, b: a is not None and b is not None and a >= b}


class SoqlError(ValueError):
    """A query Salesforce would refuse; `code` is its errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query, fields already mapped to their canonical names."""

    sobject: str
    fields: tuple[str, ...]
    where: Predicate | None
    order: tuple[tuple[str, bool], ...]
    limit: int | None


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; anything unreadable is a MALFORMED_QUERY."""
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos:pos + 20]}'")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, schema: dict[str, tuple[str, ...]]) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.schema = schema
        self.columns: dict[str, str] = {}

    def peek(self, upper: bool = True) -> str:
        if self.pos >= len(self.tokens):
            return ""
        value = self.tokens[self.pos][1]
        return value.upper() if upper else value

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        token = self.tokens[self.pos]
        if expected and token[1].upper() != expected:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token[1]}'")
        self.pos += 1
        return token

    def parse(self) -> Query:
        self.take("SELECT")
        names = [self.take()[1]]
        while self.peek() == ",":
            self.take()
            names.append(self.take()[1])
        self.take("FROM")
        sobject = self._sobject(self.take()[1])
        fields = tuple(self._field(n) for n in names)
        where = self._where() if self.peek() == "WHERE" else None
        order = self._order() if self.peek() == "ORDER" else ()
        limit = self._limit() if self.peek() == "LIMIT" else None
        if self.pos < len(self.tokens):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.peek(False)}'")
        return Query(sobject, fields, where, order, limit)

    def _sobject(self, name: str) -> str:
        for known, columns in self.schema.items():
            if known.lower() == name.lower():
                self.columns = {c.lower(): c for c in columns}
                return known
        raise SoqlError("INVALID_TYPE", f"sObject type '{name}' is not supported.")

    def _field(self, name: str) -> str:
        canonical = self.columns.get(name.lower())
        if canonical is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity. If you are attempting to use "
                                             "a custom field, be sure to append the '__c' after the custom field name.")
        return canonical

    def _where(self) -> Predicate:
        self.take("WHERE")
        return self._or()

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self.peek() == "OR":
            self.take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._factor()]
        while self.peek() == "AND":
            self.take()
            parts.append(self._factor())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def _factor(self) -> Predicate:
        if self.peek() == "(":
            self.take()
            inner = self._or()
            self.take(")")
            return inner
        if self.peek() == "NOT":
            self.take()
            inner = self._factor()
            return lambda row: not inner(row)
        field = self._field(self.take()[1])
        if self.peek() == "IN":
            return self._in(field)
        kind, op = self.take()
        if kind != "op":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{op}'")
        value, compare = self._literal(), _OPS[op]
        return lambda row: compare(row.get(field), value)

    def _in(self, field: str) -> Predicate:
        """`field IN ('a', 'b')` (SOQL and SOSL Reference, "Comparison Operators": IN takes a list of values)."""
        self.take("IN")
        self.take("(")
        values = {self._literal()}
        while self.peek() == ",":
            self.take()
            values.add(self._literal())
        self.take(")")
        return lambda row: row.get(field) in values

    def _literal(self) -> Any:
        kind, text = self.take()
        if kind == "dt":
            return _sf_datetime(text)
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text)
        if kind in ("date",):
            return text
        if kind == "word" and text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text.lower()]
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text}'")

    def _order(self) -> tuple[tuple[str, bool], ...]:
        self.take("ORDER")
        self.take("BY")
        items = []
        while True:
            field = self._field(self.take()[1])
            desc = False
            if self.peek() in ("ASC", "DESC"):
                desc = self.take()[1].upper() == "DESC"
            items.append((field, desc))
            if self.peek() != ",":
                return tuple(items)
            self.take()

    def _limit(self) -> int:
        self.take("LIMIT")
        kind, text = self.take()
        if kind != "num" or not text.isdigit():
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text}'")
        return int(text)


def _sf_datetime(text: str) -> str:
    """A datetime literal in the stored format, so string comparison orders instants."""
    try:
        epoch = parse_iso(text)
    except ValueError:
        raise SoqlError("MALFORMED_QUERY", f"invalid date/time: '{text}'") from None
    dt = datetime.fromtimestamp(epoch, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def parse(text: str, schema: dict[str, tuple[str, ...]]) -> Query:
    """Parse a query against {sobject: columns}; raises SoqlError."""
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "empty query")
    return _Parser(text, schema).parse()
