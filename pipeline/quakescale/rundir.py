"""The run directory is the database: paths, atomic writes, status rows, manifest.

```
RUN/
  config.yaml            resolved config (what actually ran)
  manifest.json          versions, hashes, host, timings
  summary.json           counts, timings, errors vs truth when there is truth
  plan.parquet           station-days found in the archive (availability, gaps, readability)
  status/STAGE.parquet   compacted status rows; status/STAGE/*.parquet parts not yet compacted
  picks/day=YYYY-MM-DD/NET.STA.parquet
  events/ dtcc/ relocated/ catalogs/ jobs/ logs/
```
Every file is written to a temporary name in the same directory and renamed into place, so a
killed writer never leaves a half file that a reader takes for done.  The readers of the stages'
outputs are here too: :func:`gather_picks`, :func:`assigned_picks`, :func:`need` (an input, or
:class:`~quakescale.errors.UpstreamMissing` naming the stage that should have written it).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema as S
from .errors import UpstreamMissing


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_table(table, path, schema: pa.Schema | None = None, where: str = "") -> Path:
    if schema is not None:
        table = S.conform(table, schema, where=where or str(path))
    elif isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_table(path, schema: pa.Schema | None = None) -> pa.Table:
    t = pq.read_table(path)
    if schema is not None:
        S.check_version(t, schema, where=str(path))
    return t


def write_json(obj, path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def write_text(text: str, path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


class RunDir:
    def __init__(self, root) -> None:
        self.root = Path(root)
        self.config_changed = False

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # paths
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.parquet"

    def sub(self, *parts) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def picks_file(self, day: str, station_id: str) -> Path:
        return self.root / "picks" / f"day={day}" / f"{station_id}.parquet"

    def status_parts_dir(self, stage: str) -> Path:
        return self.root / "status" / stage

    def status_file(self, stage: str) -> Path:
        return self.root / "status" / f"{stage}.parquet"

    # status
    def write_status(self, stage: str, rows: list[dict], part: str | None = None) -> Path:
        """Write status rows of one task (a unit or a chunk of units) as one part file."""
        now = pd.Timestamp.now(tz="UTC")
        host = socket.gethostname()
        recs = []
        for r in rows:
            rec = {
                "stage": stage,
                "reason": "",
                "n_out": 0,
                "seconds": 0.0,
                "attempt": 1,
                "host": host,
                "finished": now,
            }
            rec.update(r)
            recs.append(rec)
        df = pd.DataFrame.from_records(recs, columns=S.STATUS.names)
        name = part or f"{int(time.time() * 1e6)}-{uuid.uuid4().hex[:8]}"
        return write_table(df, self.status_parts_dir(stage) / f"{name}.parquet", S.STATUS)

    def read_status(self, stage: str, latest: bool = True) -> pd.DataFrame:
        """All status rows of a stage (compacted + parts); with ``latest`` one row per unit,
        the most recent."""
        frames = []
        f = self.status_file(stage)
        if f.exists():
            frames.append(pq.read_table(f).to_pandas())
        d = self.status_parts_dir(stage)
        if d.exists():
            for p in sorted(d.glob("*.parquet")):
                frames.append(pq.read_table(p).to_pandas())
        if not frames:
            return pd.DataFrame(columns=S.STATUS.names)
        df = pd.concat([x for x in frames if len(x)], ignore_index=True) if any(len(x) for x in frames) else frames[0]
        if latest and len(df):
            df = df.sort_values("finished", kind="stable").drop_duplicates("unit", keep="last").reset_index(drop=True)
        return df

    def compact_status(self, stage: str) -> Path | None:
        """Merge the part files of a stage into status/STAGE.parquet (all history kept)."""
        d = self.status_parts_dir(stage)
        parts = sorted(d.glob("*.parquet")) if d.exists() else []
        if not parts:
            return self.status_file(stage) if self.status_file(stage).exists() else None
        df = self.read_status(stage, latest=False)
        out = write_table(df, self.status_file(stage), S.STATUS)
        for p in parts:
            p.unlink(missing_ok=True)
        return out

    def done_units(self, stage: str, states=("ok", "no_data", "skipped")) -> set[str]:
        st = self.read_status(stage)
        if not len(st):
            return set()
        return set(st.loc[st["state"].isin(states), "unit"])


# ----------------------------------------------------------------------------- stage outputs
def events_path(rd: RunDir, name: str) -> Path:
    """``RUN/events/NAME.parquet``."""
    return rd.root / "events" / f"{name}.parquet"


#: which stage writes each input a later stage reads
PRODUCER = {"associated": "associate", "assignments": "associate", "located": "locate", "relocated": "relocate"}


def upstream_reason(rd: RunDir, stage: str) -> str:
    """What the status rows of ``stage`` say: its failed unit(s) and reason, or that it has not run."""
    st = rd.read_status(stage)
    if not len(st):
        return f"stage {stage!r} has not run"
    bad = st[st.state == "failed"]
    if len(bad):
        r = bad.iloc[-1]
        return f"stage {stage!r} failed (unit {r.unit}: {' '.join(str(r.reason).split())[:300]})"
    r = st.iloc[-1]
    return f"stage {stage!r} is {r.state} (unit {r.unit}) but left no output"


def need(rd: RunDir, name: str, stage: str) -> Path:
    """The path of input ``name`` (events/NAME.parquet); :class:`UpstreamMissing` naming the
    upstream stage and its reason when it is absent."""
    path = events_path(rd, name)
    if not path.exists():
        up = PRODUCER.get(name, "?")
        raise UpstreamMissing(
            f"{stage}: input {path.relative_to(rd.root)} is missing because {upstream_reason(rd, up)}"
        )
    return path


def gather_picks(rd: RunDir) -> pd.DataFrame | None:
    """All picks of the run (compacted day files or per-station-day files)."""
    d = rd.root / "picks"
    if not d.exists():
        return None
    files = sorted(d.glob("day=*/*.parquet"))
    if not files:
        return None
    tables = [pq.read_table(f) for f in files]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame(columns=["station_id", "phase", "time"])
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def compact_picks(rd: RunDir) -> int:
    """One file per day (``picks/day=D/all.parquet``) instead of one per station-day, so a
    large run leaves no 10^6 small files; station files written later override the compacted
    rows of their station."""
    n = 0
    for ddir in sorted((rd.root / "picks").glob("day=*")):
        files = sorted(f for f in ddir.glob("*.parquet") if f.name != "all.parquet")
        if not files:
            continue
        new = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
        stations_new = set(f.stem for f in files)
        allf = ddir / "all.parquet"
        if allf.exists():
            old = pq.read_table(allf)
            old = old.filter(pc.invert(pc.is_in(old["station_id"], pa.array(sorted(stations_new)))))
            new = pa.concat_tables([old, new], promote_options="default")
        write_table(new, allf)
        for f in files:
            f.unlink()
        n += len(files)
    return n


def assigned_picks(rd: RunDir) -> pd.DataFrame:
    """Picks that belong to events: the assignment rows joined with the pick attributes
    (amplitude, probability, channel) of the gathered picks."""
    asg = pd.read_parquet(need(rd, "assignments", "picks of events"))
    picks = gather_picks(rd)
    if picks is None or not len(asg):
        return asg
    key = ["station_id", "phase", "time"]
    cols = ("amp_wa_mm", "amp_source", "amp_clipped", "probability", "snr", "channel", "network", "station", "location")
    extra = [c for c in cols + ("method", "model") if c in picks]
    p = picks[key + extra].drop_duplicates(key)
    return asg.merge(p, on=key, how="left")
