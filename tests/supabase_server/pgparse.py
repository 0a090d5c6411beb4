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


# -- filters --------------------------------------------------------------
def parse_filter_key(key: str) -> Field:
    p = _P(key, f"failed to parse tree path ({key})")
    names = [p.field_name()]
    while p.eat("."):
        names.append(p.field_name())
    path = p.json_path()
    if not p.eof():
        p.fail('"->>", "->", delimiter (.) or end of input')
    if len(names) > 1:
        raise EmbedError("not_embedded", names[0])
    return Field(names[0], path)


def _list_val(p: _P) -> list[str]:
    p.ws()
    p.expect("(")
    p.ws()
    vals = []
    while True:
        save = p.i
        q = p.quoted() if p.peek('"') else None
        if q is not None and (p.eof() or p.s[p.i] in ",)"):
            vals.append(q)
        else:
            p.i = save
            start = p.i
            while not p.eof() and p.s[p.i] not in ",)":
                p.i += 1
            vals.append(p.s[start:p.i])
        if p.eat(","):
            continue
        p.ws()
        p.expect(")", '")" or ","')
        p.ws()
        return vals


def _logic_single_val(p: _P) -> str:
    save = p.i
    if p.peek('"'):
        try:
            q = p.quoted()
            if p.eof() or p.s[p.i] in ",)":
                return q
        except QPError:
            pass
        p.i = save
    if p.peek("{"):
        j = p.s.find("}", p.i)
        if j != -1 and "{" not in p.s[p.i + 1:j]:
            v = p.s[p.i:j + 1]
            p.i = j + 1
            return v
    start = p.i
    while not p.eof() and p.s[p.i] not in ",)":
        p.i += 1
    return p.s[start:p.i]


def _op_expr(p: _P, fld: Field, logic: bool) -> Filter:
    negate = False
    if p.peek("not."):
        p.i += 4
        negate = True
    single = (lambda: _logic_single_val(p)) if logic else p.rest
    if p.eat("in."):
        return Filter(fld, negate, "in", _list_val(p))
    if p.eat("is."):
        for v in IS_VALS:
            if p.s[p.i:p.i + len(v)].lower() == v:
                p.i += len(v)
                return Filter(fld, negate, "is", v)
        p.fail("isVal: (null, not_null, true, false, unknown)")
    if p.eat("isdistinct."):
        return Filter(fld, negate, "isdistinct", single())
    for op in FTS_OPS:
        save = p.i
        if p.eat(op):
            lang = None
            if p.eat("("):
                lang = p.ident()
                p.expect(")")
            if p.eat("."):
                return Filter(fld, negate, op, single(), lang=lang)
            p.i = save
    for op in SIMPLE_OPS:
        if p.eat(op + "."):
            return Filter(fld, negate, op, single())
    for op in QUANT_OPS:
        save = p.i
        if p.eat(op):
            quant = None
            if p.eat("(any)"):
                quant = "any"
            elif p.eat("(all)"):
                quant = "all"
            if p.eat("."):
                return Filter(fld, negate, op, single(), quant=quant)
            p.i = save
    p.fail('"not" or operator (eq, gt, ...)')
    raise AssertionError  # unreachable


def parse_filter(key: str, value: str) -> Filter:
    fld = parse_filter_key(key)
    p = _P(value, f"failed to parse filter ({value})")
    flt = _op_expr(p, fld, logic=False)
    if not p.eof():
        p.fail('end of input')
    return flt


# -- logic trees ----------------------------------------------------------
def parse_logic(key: str, value: str) -> LogicTree:
    parts = key.split(".")
    op = parts[-1]
    rest = [x for x in parts[:-1] if x != "not"]
    if rest:
        raise EmbedError("not_embedded", rest[0])
    negate = "not" in parts[:-1]
    text = ("not." if negate else "") + op + value
    p = _P(text, f"failed to parse logic tree ({value})")
    tree = _logic_tree(p)
    if not isinstance(tree, LogicTree) or not p.eof():
        p.fail('end of input')
    return tree


def _logic_tree(p: _P):
    save = p.i
    # try a statement: field.op.value
    try:
        fld = p.pfield()
        if p.eat("."):
            return _op_expr(p, fld, logic=True)
    except QPError:
        pass
    p.i = save
    negate = p.eat("not.")
    if p.eat("and"):
        op = "and"
    elif p.eat("or"):
        op = "or"
    else:
        p.fail("logic operator (and, or)")
    p.ws()
    p.expect("(")
    p.ws()
    children = []
    while True:
        children.append(_logic_tree(p))
        p.ws()
        if p.eat(","):
            p.ws()
            continue
        p.expect(")", '")" or ","')
        p.ws()
        return LogicTree(op, negate, children)


# -- order ----------------------------------------------------------------
def parse_order(value: str) -> list[OrderTerm]:
    p = _P(value, f"failed to parse order ({value})")
    terms = []
    while True:
        p.ws()
        save = p.i
        fld = p.pfield()
        if p.peek("("):
            p.i = save
            raise EmbedError("not_embedded", p.field_name())
        term = OrderTerm(fld)
        if p.eat(".asc"):
            term.direction = "asc"
        elif p.eat(".desc"):
            term.direction = "desc"
        if p.eat(".nullsfirst"):
            term.nulls = "first"
        elif p.eat(".nullslast"):
            term.nulls = "last"
        p.ws()
        terms.append(term)
        if p.eat(","):
            continue
        if p.eof():
            return terms
        if p.peek("."):
            p.i += 1
            p.fail('"asc", "desc", "nullsfirst" or "nullslast"')
        p.fail('"," or end of input')


def parse_columns(value: str, what: str = "columns") -> list[str]:
    p = _P(value, f"failed to parse {what} parameter ({value})")
    cols = []
    while True:
        p.ws()
        cols.append(p.field_name())
        p.ws()
        if p.eat(","):
            continue
        if p.eof():
            return cols
        p.fail('"," or end of input')


def pg_array_literal(values: list[str]) -> str:
    """Build a Postgres array literal with every element double-quoted."""
    out = []
    for v in values:
        out.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"
