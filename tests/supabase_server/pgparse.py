"""Parsers for PostgREST query-string syntax (select, filters, logic trees, order).

Modelled on PostgREST's ``ApiRequest/QueryParams.hs`` (Parsec grammar): field
names, JSON paths, the quoting rules of ``in.(...)`` lists and ``or=(...)``
trees (double quotes, backslash escapes any character), operators with
``not.`` and ``(any)``/``(all)`` modifiers. Failures raise :class:`QPError`,
rendered as PGRST100 with PostgREST's ``"failed to parse ..." (line 1,
column N)`` message; the ``details`` text is an approximation of Parsec's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIMPLE_OPS = ["neq", "cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj"]
QUANT_OPS = ["eq", "gte", "gt", "lte", "lt", "like", "ilike", "match", "imatch"]
FTS_OPS = ["fts", "plfts", "phfts", "wfts"]
IS_VALS = ["null", "not_null", "true", "false", "unknown"]


class QPError(Exception):
    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class EmbedError(Exception):
    """Something that needs a relationship (embedding, related order, ...)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(name)
        self.kind = kind  # "relation" | "aggregate" | "not_embedded"
        self.name = name


@dataclass
class Field:
    name: str
    path: list[tuple[str, str, bool]] = field(default_factory=list)  # (arrow, key, is_idx)

    @property
    def out_name(self) -> str:
        if not self.path:
            return self.name
        return self.path[-1][1]


@dataclass
class SelectItem:
    field: Field
    alias: str | None = None
    cast: str | None = None
    star: bool = False


@dataclass
class Filter:
    field: Field
    negate: bool
    op: str  # eq, neq, ..., in, is, isdistinct, fts, ...
    value: object  # str, list[str] for "in", is-keyword for "is"
    quant: str | None = None  # "any" | "all"
    lang: str | None = None


@dataclass
class LogicTree:
    op: str  # "and" | "or"
    negate: bool
    children: list = field(default_factory=list)  # Filter | LogicTree


@dataclass
class OrderTerm:
    field: Field
    direction: str | None = None
    nulls: str | None = None


class _P:
    """Tiny backtracking cursor over one parameter value."""

    def __init__(self, text: str, name: str) -> None:
        self.s = text
        self.i = 0
        self.name = name

    def fail(self, expecting: str, at: int | None = None):
        i = self.i if at is None else at
        unexpected = (
            "end of input" if i >= len(self.s) else f'"{self.s[i]}"'
        )
        raise QPError(
            f'"{self.name}" (line 1, column {i + 1})',
            f"unexpected {unexpected} expecting {expecting}",
        )

    def peek(self, lit: str) -> bool:
        return self.s.startswith(lit, self.i)

    def eat(self, lit: str) -> bool:
        if self.s.startswith(lit, self.i):
            self.i += len(lit)
            return True
        return False

    def expect(self, lit: str, what: str | None = None) -> None:
        if not self.eat(lit):
            self.fail(what or f'"{lit}"')

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def ws(self) -> None:
        while not self.eof() and self.s[self.i] in " \t":
            self.i += 1

    def rest(self) -> str:
        r = self.s[self.i:]
        self.i = len(self.s)
        return r

    # -- lexical pieces -------------------------------------------------
    def quoted(self) -> str | None:
        if not self.peek('"'):
            return None
        j = self.i + 1
        out = []
        while j < len(self.s):
            c = self.s[j]
            if c == "\\" and j + 1 < len(self.s):
                out.append(self.s[j + 1])
                j += 2
                continue
            if c == "\\":
                break
            if c == '"':
                self.i = j + 1
                return "".join(out)
            out.append(c)
            j += 1
        self.fail('"\\"" (closing quote)', at=len(self.s))
        return None  # unreachable

    def _ident_run(self, ok) -> str:
        start = self.i
        while not self.eof() and ok(self.s[self.i]):
            self.i += 1
        return self.s[start:self.i]

    def _sep_by_dash(self, ok) -> str | None:
        parts = []
        while True:
            run = self._ident_run(ok)
            if not run:
                if parts:  # a dash was consumed: back off it
                    self.i -= 1
                    return "-".join(p.strip() for p in parts)
                return None
            parts.append(run)
            if self.peek("-") and not self.peek("->"):
                self.i += 1
                continue
            return "-".join(p.strip() for p in parts)

    def field_name(self) -> str:
        q = self.quoted()
        if q is not None:
            return q
        name = self._sep_by_dash(lambda c: c.isalnum() or c in "_ $")
        if name is None or name == "":
            self.fail("field name (* or [a..z0..9_$])")
        return name

    def json_path(self) -> list[tuple[str, str, bool]]:
        path = []
        while True:
            if self.eat("->>"):
                arrow = "->>"
            elif self.eat("->"):
                arrow = "->"
            else:
                return path
            save = self.i
            neg = self.eat("-")
            digits = self._ident_run(str.isdigit)
            if digits and (
                self.eof() or any(self.peek(x) for x in ("->", "::", ".", ","))
            ):
                path.append((arrow, ("-" if neg else "") + digits, True))
                continue
            self.i = save
            q = self.quoted()
            if q is None:
                q = self._sep_by_dash(lambda c: c not in "(-:.,>)")
            if q is None or q == "":
                self.fail("any non reserved character different from: .,>()")
            path.append((arrow, q, False))

    def pfield(self) -> Field:
        self.ws()
        name = self.field_name()
        path = self.json_path()
        self.ws()
        return Field(name, path)

    def ident(self) -> str:
        r = self._ident_run(lambda c: c.isalnum() or c in "_ $").strip()
        if not r:
            self.fail("letter or digit")
        return r


# -- select ---------------------------------------------------------------
def parse_select(text: str) -> list[SelectItem]:
    p = _P(text, f"failed to parse select parameter ({text})")
    items: list[SelectItem] = []
    if text == "":
        return items
    while True:
        items.append(_select_item(p))
        p.ws()
        if p.eat(","):
            p.ws()
            continue
        if p.eof():
            return items
        p.fail('",", "->>", "->", "::" or end of input')


def _at_item_end(p: _P) -> bool:
    return p.eof() or p.peek(",") or p.peek(")")


def _select_item(p: _P) -> SelectItem:
    p.ws()
    if p.peek("*"):
        p.i += 1
        p.ws()
        if _at_item_end(p):
            return SelectItem(Field("*"), star=True)
        p.fail('",", ")" or end of input')
    if p.peek("..."):
        p.i += 3
        name = p.field_name()
        raise EmbedError("relation", name)
    start = p.i
    alias = None
    try:
        alias = p.field_name()
        if p.peek(":") and not p.peek("::"):
            p.i += 1
        else:
            alias = None
            p.i = start
    except QPError:
        p.i = start
    if p.peek("count()"):
        raise EmbedError("aggregate", "count")
    save = p.i
    fld = p.pfield()
    if p.peek("(") or p.peek("!"):
        p.i = save
        name = p.field_name()
        raise EmbedError("relation", name)
    cast = None
    if p.eat("::"):
        cast = p.ident()
    if p.peek("."):
        for agg in ("sum()", "avg()", "count()", "max()", "min()"):
            if p.s.startswith(agg, p.i + 1):
                raise EmbedError("aggregate", agg[:-2])
    p.ws()
    if not _at_item_end(p):
        p.fail('"->>", "->", "::", "," or end of input')
    return SelectItem(fld, alias, cast)
