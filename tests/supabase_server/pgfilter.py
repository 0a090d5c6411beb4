"""PostgREST filter, logic-tree (``or=``/``and=``) and ``order=`` parsers."""

from __future__ import annotations

from .pgparse import (
    FTS_OPS, IS_VALS, QUANT_OPS, SIMPLE_OPS, EmbedError, Field, Filter, LogicTree,
    OrderTerm, QPError, _P,
)


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
