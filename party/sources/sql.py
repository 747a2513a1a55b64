"""SQL text for encoding, counting and validating a table inside DuckDB or PostgreSQL.

Every measured column becomes a small integer code computed by a CASE expression (categories through a
list / array lookup, bins through edge comparisons or width_bucket), exactly as `cleanroom.encoding.encode`
does in pandas. Values rejected by a policy get the code REJECT (-1); cells not grouped in a GROUPING SETS
result come back as NOT_GROUPED (-2).
A status expression per column classifies each value for the validation report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from party.sources.rules import REJECT, ColumnRule

NOT_GROUPED = -2

# Value status per column, used by the validation report and to locate the first rejected row.
OK, MISSING, UNKNOWN, BELOW, ABOVE, UNCASTABLE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {
    MISSING: "missing",
    UNKNOWN: "unknown category",
    BELOW: "below lower bound",
    ABOVE: "above upper bound",
    UNCASTABLE: "not a number",
}

_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "REAL",
    "NUMERIC",
    "DOUBLE PRECISION",
    "INT2",
    "INT4",
    "INT8",
    "FLOAT4",
    "FLOAT8",
)
_TEXT_TYPES = ("VARCHAR", "TEXT", "CHARACTER VARYING", "CHARACTER", "CHAR", "BPCHAR", "STRING")
# Python's str.strip() whitespace (str.isspace()); all of it is below code point 33 or above 132.
_WHITESPACE = "".join(chr(i) for i in range(0x3001) if chr(i).isspace())
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL", "DOUBLE PRECISION", "FLOAT4", "FLOAT8")

# What PostgreSQL's float8 input accepts (there is no TRY_CAST before PostgreSQL 16's pg_input_is_valid).
_PG_NUMBER_RE = r"^\s*[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf|infinity|nan)\s*$"


def type_family(sql_type: str) -> str:
    """'numeric', 'float' (numeric too), 'text', 'boolean' or 'other' for a DuckDB/PostgreSQL type."""
    base = sql_type.upper().split("(")[0].strip()
    if base in _FLOAT_TYPES:
        return "float"
    if base in _NUMERIC_TYPES:
        return "numeric"
    if base in _TEXT_TYPES:
        return "text"
    return "boolean" if base in ("BOOLEAN", "BOOL") else "other"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Dialect:
    """The few expressions where DuckDB and PostgreSQL differ."""

    name: str  # "duckdb" | "postgresql" (party.sources.spark subclasses it for Spark SQL)

    def ident(self, name: str) -> str:
        return quote_ident(name)

    def literal(self, text: str) -> str:
        return quote_literal(text)

    def double_type(self) -> str:
        return "DOUBLE PRECISION"

    def text_type(self) -> str:
        return "VARCHAR" if self.name == "duckdb" else "text"

    def double(self, value: float) -> str:
        return f"CAST({self.literal(repr(float(value)))} AS {self.double_type()})"

    def is_nan(self, expr: str) -> str:
        if self.name == "duckdb":
            return f"isnan({expr})"
        return f"({expr} = CAST('NaN' AS DOUBLE PRECISION))"

    def list_position(self, values: Sequence[str], expr: str) -> str:
        items = ", ".join(self.literal(v) for v in values)
        if self.name == "duckdb":
            return f"list_position([{items}]::VARCHAR[], {expr})"
        return f"array_position(ARRAY[{items}]::text[], {expr})"

    def text_to_double(self, expr: str) -> str:
        if self.name == "duckdb":
            return f"TRY_CAST({expr} AS DOUBLE)"
        return f"(CASE WHEN {self.castable(expr)} THEN CAST({expr} AS DOUBLE PRECISION) END)"

    def uncastable(self, expr: str, value: str, blank: str) -> str:
        """A non-blank text that is not a number (DuckDB: its TRY_CAST `value` came out NULL)."""
        if self.name == "duckdb":
            return f"({value} IS NULL AND NOT {blank})"
        return f"(NOT {blank} AND NOT {self.castable(expr)})"

    def castable(self, expr: str) -> str:
        if self.name == "duckdb":
            return f"(TRY_CAST({expr} AS DOUBLE) IS NOT NULL)"
        return f"({expr} ~* {self.literal(_PG_NUMBER_RE)})"

    def bin_index(self, value: str, edges: Sequence[float]) -> str:
        """Index i of the bin [e_i, e_{i+1}) holding an in-range value (the last bin is closed)."""
        interior = edges[1:-1]
        if not interior:
            return "0"
        if self.name == "postgresql":  # binary search: the number of interior edges <= value
            items = ", ".join(self.double(e) for e in interior)
            return f"width_bucket({value}, ARRAY[{items}])"
        cases = " ".join(
            f"WHEN {value} >= {self.double(interior[i - 1])} THEN {i}" for i in range(len(interior), 0, -1)
        )
        return f"CASE {cases} ELSE 0 END"

    def is_blank(self, expr: str) -> str:
        """NULL, or a string of whitespace only (missing, as in cleanroom.encoding).

        Trimming every value is slow; a first character in 33..132 (printable ASCII) decides at once.
        """
        trim = "trim" if self.name == "duckdb" else "btrim"
        return (
            f"(CASE WHEN {expr} IS NULL OR length({expr}) = 0 THEN true "
            f"WHEN ascii({expr}) BETWEEN 33 AND 132 THEN false "
            f"ELSE {trim}({expr}, {self.literal(_WHITESPACE)}) = '' END)"
        )

    def float_as_text(self, expr: str) -> str:
        """The category key of a float: integral values as integers (13.0 -> '13'), else str()."""
        text = "VARCHAR" if self.name == "duckdb" else "text"
        return (
            f"(CASE WHEN {expr} = trunc({expr}) AND abs({expr}) < 9e18 "
            f"THEN CAST(CAST({expr} AS BIGINT) AS {text}) ELSE CAST({expr} AS {text}) END)"
        )


@dataclass(frozen=True)
class ColumnSql:
    """Code and status expressions of one measured column over the relation `src`."""

    rule: ColumnRule
    sql_type: str
    dialect: Dialect

    @property
    def ident(self) -> str:
        return self.dialect.ident(self.rule.name)

    def parts(self) -> dict[str, str]:
        """The per-row pieces the code and status are built from: name -> SQL expression over the relation.

        Categorical: `missing` (condition) and `position` (1-based category index or NULL). Numerical:
        `missing`, `value` (double) and, for text columns, `uncastable`.
        """
        family, col = type_family(self.sql_type), self.ident
        if self.rule.kind == "categorical":
            missing, text = col + " IS NULL", f"CAST({col} AS {self.dialect.text_type()})"
            if family == "boolean":
                text = f"(CASE WHEN {col} THEN 'True' ELSE 'False' END)"
            elif family == "float":
                missing, text = (
                    f"({col} IS NULL OR {self.dialect.is_nan(col)})",
                    self.dialect.float_as_text(col),
                )
            elif family == "text":
                missing, text = self.dialect.is_blank(col), col
            return {"missing": missing, "position": self.dialect.list_position(self.rule.categories, text)}
        if family == "text":
            blank, value = self.dialect.is_blank(col), self.dialect.text_to_double(col)
            return {
                "missing": f"({blank} OR {self.dialect.is_nan(value)})",
                "value": value,
                "uncastable": self.dialect.uncastable(col, value, blank),
            }
        value = f"CAST({col} AS {self.dialect.double_type()})"
        return {"missing": f"({col} IS NULL OR {self.dialect.is_nan(value)})", "value": value}

    def code(self, parts: dict[str, str] | None = None) -> str:
        """The code expression, over the relation or (given `parts` names) over a prepared projection."""
        rule, part = self.rule, parts or self.parts()
        if rule.kind == "categorical":
            return (
                f"CASE WHEN {part['missing']} THEN {rule.missing_code} "
                f"ELSE COALESCE({part['position']} - 1, {rule.other_code}) END"
            )
        value = part["value"]
        cases = [f"WHEN {part['uncastable']} THEN {REJECT}"] if "uncastable" in part else []
        cases.append(f"WHEN {part['missing']} THEN {rule.missing_code}")
        cases.append(
            f"WHEN {value} < {self.dialect.double(rule.edges[0])} THEN {rule.out_of_range_code(False)}"
        )
        cases.append(
            f"WHEN {value} > {self.dialect.double(rule.edges[-1])} THEN {rule.out_of_range_code(True)}"
        )
        return "CASE " + " ".join(cases) + f" ELSE {self.dialect.bin_index(value, rule.edges)} END"

    def status(self, parts: dict[str, str] | None = None) -> str:
        rule, part = self.rule, parts or self.parts()
        if rule.kind == "categorical":
            return (
                f"CASE WHEN {part['missing']} THEN {MISSING} WHEN {part['position']} IS NULL "
                f"THEN {UNKNOWN} ELSE {OK} END"
            )
        value = part["value"]
        cases = [f"WHEN {part['uncastable']} THEN {UNCASTABLE}"] if "uncastable" in part else []
        cases.append(f"WHEN {part['missing']} THEN {MISSING}")
        cases.append(f"WHEN {value} < {self.dialect.double(rule.edges[0])} THEN {BELOW}")
        cases.append(f"WHEN {value} > {self.dialect.double(rule.edges[-1])} THEN {ABOVE}")
        return "CASE " + " ".join(cases) + f" ELSE {OK} END"

    def rejected_statuses(self) -> tuple[tuple[int, ...], ...]:
        """Groups of statuses that raise DataError, in the order cleanroom.encoding checks them."""
        rule, groups = self.rule, list[tuple[int, ...]]()
        if rule.kind == "numerical" and type_family(self.sql_type) == "text":
            groups.append((UNCASTABLE,))
        if rule.missing == "reject":
            groups.append((MISSING,))
        if rule.kind == "categorical" and rule.unknown_category == "reject":
            groups.append((UNKNOWN,))
        if rule.kind == "numerical" and rule.out_of_range == "reject":
            groups.append((BELOW, ABOVE))
        return tuple(groups)

    def rejection_text(self, status: int) -> str:
        """The words cleanroom.encoding uses for a rejected value of this status."""
        if status == MISSING:
            return "missing value rejected by policy, got"
        if status == UNKNOWN:
            return "unknown category"
        if status == UNCASTABLE:
            return "cannot cast to a number:"
        return f"outside [{self.rule.edges[0]:g}, {self.rule.edges[-1]:g}]:"


def code_type(columns: Sequence[ColumnSql]) -> str:
    """The smallest signed integer type holding every code (and REJECT, NOT_GROUPED)."""
    largest = max((col.rule.n_levels for col in columns), default=1)
    return "SMALLINT" if largest < 2**15 else "INTEGER"


def prepared(
    relation: str, columns: Sequence[ColumnSql], fence: bool = True
) -> tuple[str, list[dict[str, str]]]:
    """An inner projection computing every column's pieces once (p<j>_<piece>), and their names per column.

    Without it, engines re-evaluate e.g. a text column's cast in every WHEN branch that uses it. The OFFSET 0
    (`fence`) keeps PostgreSQL from inlining the projection back into the outer expressions; it also keeps
    the expressions out of parallel workers, so the streamed scan (`fence=False`) goes without it.
    """
    items, names = [], []
    for j, column in enumerate(columns):
        mine = {}
        for piece, expr in column.parts().items():
            mine[piece] = f"p{j}_{piece}"
            items.append(f"{expr} AS p{j}_{piece}")
        names.append(mine)
    offset = " OFFSET 0" if fence else ""
    return f"(SELECT {', '.join(items) or '1 AS p'} FROM {relation}{offset}) AS prepared", names


def encode_query(relation: str, columns: Sequence[ColumnSql], fence: bool = True) -> str:
    """The codes of every measured column, as columns c0, c1, ... (one row per data row)."""
    kind = code_type(columns)
    inner, names = prepared(relation, columns, fence)
    projected = ", ".join(f"CAST({col.code(names[j])} AS {kind}) AS c{j}" for j, col in enumerate(columns))
    return f"SELECT {projected} FROM {inner}"


def grouping_sets_query(codes: str, n_columns: int, sets: Sequence[tuple[int, ...]]) -> str:
    """One scan of a codes relation (columns c0...), grouped by each set of column positions.

    Codes are never NULL, so the NULL pattern of a result row (returned as NOT_GROUPED) names its set.
    """
    names = [f"c{j}" for j in range(n_columns)]
    grouping = ", ".join("(" + ", ".join(names[j] for j in group) + ")" for group in sets)
    outputs = ", ".join(f"COALESCE({name}, {NOT_GROUPED})" for name in names)
    return f"SELECT {outputs}, count(*) FROM {codes} GROUP BY GROUPING SETS ({grouping})"


def report_query(relation: str, columns: Sequence[ColumnSql], fence: bool = True) -> str:
    """One scan: the row count and, per column, how many values have each non-OK status."""
    inner, names = prepared(relation, columns, fence)
    statuses = ", ".join(f"{col.status(names[j])} AS s{j}" for j, col in enumerate(columns))
    counts = ["count(*)"]
    for j in range(len(columns)):
        counts += [f"count(*) FILTER (WHERE s{j} = {status})" for status in sorted(STATUS_NAMES)]
    return f"WITH st AS (SELECT {statuses} FROM {inner}) SELECT {', '.join(counts)} FROM st"


def rejected_counts_query(relation: str, column: ColumnSql) -> str:
    """How many rows have each rejected status in one column."""
    statuses = ", ".join(str(s) for group in column.rejected_statuses() for s in group)
    return (
        f"SELECT st, count(*) FROM (SELECT {column.status()} AS st FROM {relation}) AS s "
        f"WHERE st IN ({statuses}) GROUP BY st"
    )


def row_count_query(relation: str) -> str:
    return f"SELECT count(*) FROM {relation}"


def cell_offsets(sets: Sequence[tuple[int, ...]], shape: Sequence[int]) -> list[int]:
    """Start of each set's block of keys; a block holds (levels + 1) per column so REJECT (-1) fits."""
    offsets, total = [], 0
    for group in sets:
        offsets.append(total)
        size = 1
        for j in group:
            size *= shape[j] + 1
        total += size
    return offsets


def unnest_counts_query(codes: str, sets: Sequence[tuple[int, ...]], shape: Sequence[int]) -> str:
    """One scan: every row emits one packed key per set (offset + mixed-radix codes+1); counts per key.

    PostgreSQL's GROUPING SETS keeps one hash table per set and is several times slower than this.
    """
    keys = []
    for offset, group in zip(cell_offsets(sets, shape), sets, strict=True):
        packed = "0"
        for j in group:
            packed = f"({packed}) * {shape[j] + 1} + (c{j} + 1)"
        keys.append(f"{offset} + {packed}")
    return (
        f"SELECT k, count(*) FROM (SELECT unnest(ARRAY[{', '.join(keys)}]::bigint[]) AS k "
        f"FROM {codes}) AS u GROUP BY k"
    )
