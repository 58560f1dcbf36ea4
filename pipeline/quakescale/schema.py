"""Versioned Arrow schemas: the typed tables that stages exchange.

Every table written by a stage carries its schema name and version in the Arrow metadata
(``quakescale.schema`` / ``quakescale.schema_version``).  :func:`conform` casts a pandas frame
or Arrow table to a schema (required columns must be present, extra columns are kept after the
required ones) and fails with a message naming the table and the column.

Conventions: times are UTC ``timestamp[ns]``; station ids are ``NET.STA``; units are in the
column names (``depth_km``, ``amp_wa_mm``, ``residual_s``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from .errors import QuakeScaleError

TS = pa.timestamp("ns", tz="UTC")


def _schema(name: str, version: int, fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(
        [pa.field(n, t) for n, t in fields],
        metadata={"quakescale.schema": name, "quakescale.schema_version": str(version)},
    )


PICKS = _schema(
    "picks",
    2,
    [
        ("station_id", pa.string()),  # NET.STA
        ("network", pa.string()),
        ("station", pa.string()),
        ("location", pa.string()),
        ("channel", pa.string()),  # channel the pick was made on (e.g. HHZ / HH? for 3-c)
        ("phase", pa.string()),  # "P" | "S"
        ("time", TS),
        ("probability", pa.float32()),  # model probability, or classic-picker quality in [0, 1]
        ("snr", pa.float32()),
        ("amp_wa_mm", pa.float64()),  # zero-to-peak Wood-Anderson amplitude (S picks; null otherwise)
        ("method", pa.string()),  # "cerp" | "stalta" | "kurtosis" | "truth" | "external"
        ("model", pa.string()),  # model name + version, e.g. "cerp-default@1.0.0"
        # v2 (optional: filled with nulls where a producer does not know them)
        ("amp_source", pa.string()),  # "response" | "sensitivity" | "none" (S picks; null on P)
        ("amp_note", pa.string()),  # why the amplitude is missing, approximate or clipped ("" when fine)
        ("amp_clipped", pa.bool_()),  # raw counts in the amplitude window look clipped/saturated
    ],
)

EVENTS = _schema(
    "events",
    1,
    [
        ("event_id", pa.int64()),
        ("time", TS),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("depth_km", pa.float64()),
        ("magnitude", pa.float64()),
        ("mag_type", pa.string()),
        ("n_stations", pa.int32()),
        ("n_p", pa.int32()),
        ("n_s", pa.int32()),
        ("rms_s", pa.float64()),
        ("stage", pa.string()),  # "associate" | "locate" | "relocate" | "truth"
    ],
)

ASSIGNMENTS = _schema(
    "assignments",
    1,
    [
        ("event_id", pa.int64()),
        ("station_id", pa.string()),
        ("phase", pa.string()),
        ("time", TS),
        ("residual_s", pa.float64()),
        ("weight", pa.float64()),
    ],
)

DTCC = _schema(
    "dtcc",
    1,
    [
        ("event_id_1", pa.int64()),
        ("event_id_2", pa.int64()),
        ("station_id", pa.string()),
        ("phase", pa.string()),
        ("dt_s", pa.float64()),  # (t1 - t2) travel-time difference, HypoDD sign convention
        ("cc", pa.float64()),
    ],
)

STATUS = _schema(
    "status",
    1,
    [
        ("stage", pa.string()),
        ("unit", pa.string()),  # e.g. "2014-08-03/XL.L01"
        ("state", pa.string()),  # "ok" | "no_data" | "skipped" | "failed"
        ("reason", pa.string()),
        ("n_out", pa.int64()),
        ("seconds", pa.float64()),
        ("attempt", pa.int32()),
        ("host", pa.string()),
        ("finished", TS),
    ],
)

TRUTH_EVENTS = _schema(
    "truth_events",
    1,
    [
        ("event_id", pa.int64()),
        ("time", TS),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("depth_km", pa.float64()),
        ("x_km", pa.float64()),
        ("y_km", pa.float64()),
        ("magnitude", pa.float64()),
        ("fault", pa.string()),
    ],
)

TRUTH_PICKS = _schema(
    "truth_picks",
    1,
    [
        ("event_id", pa.int64()),
        ("station_id", pa.string()),
        ("network", pa.string()),
        ("station", pa.string()),
        ("phase", pa.string()),
        ("time", TS),
        ("travel_time_s", pa.float64()),
        ("distance_km", pa.float64()),  # hypocentral
        ("epi_distance_km", pa.float64()),
        ("amp_wa_mm", pa.float64()),
        ("snr", pa.float64()),  # peak 1-20 Hz signal / noise RMS at that time
    ],
)

STATIONS = _schema(
    "stations",
    1,
    [
        ("station_id", pa.string()),
        ("network", pa.string()),
        ("station", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("elevation_m", pa.float64()),
        ("kind", pa.string()),  # "campaign" | "permanent" | ...
    ],
)

#: columns a producer may leave out (conform fills them with nulls), per schema name
OPTIONAL = {"picks": ("amp_source", "amp_note", "amp_clipped")}
#: older versions of a schema this QuakeScale still reads (their missing columns are optional)
READS = {"picks": ("1", "2")}

ALL = {
    s.metadata[b"quakescale.schema"].decode(): s
    for s in (PICKS, EVENTS, ASSIGNMENTS, DTCC, STATUS, TRUTH_EVENTS, TRUTH_PICKS, STATIONS)
}


class SchemaError(QuakeScaleError, ValueError):
    pass


def schema_name(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(b"quakescale.schema", b"?").decode()


def conform(data, schema: pa.Schema, keep_extra: bool = True, where: str = "") -> pa.Table:
    """Cast a pandas DataFrame or Arrow table to ``schema``; extra columns kept after."""
    name = schema_name(schema)
    if isinstance(data, pd.DataFrame):
        data = pa.Table.from_pandas(data, preserve_index=False)
    optional = OPTIONAL.get(name, ())
    for f in schema:
        if f.name in optional and f.name not in data.column_names:
            data = data.append_column(f.name, pa.nulls(data.num_rows, f.type))
    missing = [f.name for f in schema if f.name not in data.column_names]
    if missing:
        raise SchemaError(
            f"{where or name} table: missing column(s) {missing} required by schema {name!r} "
            f"v{schema.metadata[b'quakescale.schema_version'].decode()}"
        )
    cols, fields = [], []
    for f in schema:
        col = data.column(f.name)
        try:
            if pa.types.is_timestamp(f.type) and pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = col.cast(pa.timestamp("ns")).cast(f.type)
            else:
                col = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"{where or name} table: column {f.name!r} cannot be cast from {col.type} to {f.type}: {exc}"
            ) from exc
        cols.append(col)
        fields.append(f)
    if keep_extra:
        for n in data.column_names:
            if n not in schema.names:
                cols.append(data.column(n))
                fields.append(pa.field(n, data.schema.field(n).type))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata=schema.metadata))


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def check_version(table: pa.Table, schema: pa.Schema, where: str = "") -> None:
    md = table.schema.metadata or {}
    got = md.get(b"quakescale.schema_version")
    want = schema.metadata[b"quakescale.schema_version"]
    if got is not None and got != want and got.decode() not in READS.get(schema_name(schema), ()):
        raise SchemaError(
            f"{where}: schema {schema_name(schema)!r} version {got.decode()} found, this QuakeScale reads version "
            f"{want.decode()}"
        )
