"""Generated config documents for property-based fuzzing (hypothesis), and a TOML writer.

Documents are generated from the settings dataclasses themselves: every section and key the
agent knows, values near and far from what is allowed, unknown keys, wrong nesting. Used by
tests/test_config_fuzz.py (the config file) and tests/test_fleet_fuzz.py (fleet documents).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from agent.config import CAMERA_NAME, CameraConfig, Config

PASSWORD = "Fuzz-Secret-Pw9"  # in every generated URL with credentials; must never be shown
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- values --------------------------------------------------------------------------------

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**200), max_value=10**200),  # TOML integers are unbounded
    st.floats(),  # nan, inf, -0.0, subnormals
    st.text(max_size=20),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8).map(lambda s: s * 400),
    st.sampled_from(["", "0", "20GiB", "1.5 TB", "4Mbit", "-1", "nan", "udp", "info"]),
    st.just(f"rtsp://admin:{PASSWORD}@10.0.0.9/stream"),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=12,
)


def _section_types() -> dict[str, type]:
    """Top-level sections: the Config fields that hold a settings dataclass (or a list)."""
    hints = typing.get_type_hints(Config)
    out = {}
    for f in dataclasses.fields(Config):
        hint = hints[f.name]
        for candidate in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(candidate):
                out[f.name] = candidate
    return out


def field_values(f: dataclasses.Field, hint: Any) -> st.SearchStrategy:
    """Values for one setting: mostly plausible (so validation goes deep), some junk."""
    meta = f.metadata
    if "range" in meta:
        lo, hi = meta["range"]
        near = st.floats(lo - 10, hi + 10) if hint is float else st.integers(lo - 10, hi + 10)
        plausible = st.one_of(near, st.floats(lo, hi), st.integers(math.ceil(lo), math.floor(hi)))
    elif "choices" in meta:
        plausible = st.sampled_from(meta["choices"])
    elif "pattern" in meta:
        plausible = st.from_regex(meta["pattern"], fullmatch=True)
    elif "parse" in meta:
        plausible = st.one_of(
            st.integers(-5, 2**45),
            st.sampled_from(["0", "20GiB", "500 MB", "1e3", "4Mbit", "800kbit", "9" * 400 + "TiB"]),
            st.from_regex(
                r"\s?\d{1,400}(\.\d{1,3})?\s?([KMGT]i?B|B|[kMG]?bit)?\s?", fullmatch=True
            ),
        )
    elif hint is bool:
        plausible = st.booleans()
    else:
        plausible = st.text(max_size=30)
    return st.one_of(plausible, plausible, toml_values)


def settings_table(cls: type, skip: tuple[str, ...] = ()) -> st.SearchStrategy[dict]:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    known = st.fixed_dictionaries(
        {}, optional={f.name: field_values(f, hints[f.name]) for f in fields}
    )
    unknown = st.dictionaries(st.text(min_size=1, max_size=10), toml_values, max_size=1)
    return st.tuples(known, unknown).map(lambda kv: {**kv[1], **kv[0]})


points = st.lists(
    st.one_of(
        st.lists(st.floats(-0.5, 1.5), min_size=2, max_size=2),
        st.lists(st.integers(-1, 2), min_size=2, max_size=2),
        toml_values,
    ),
    max_size=5,
)
cameras = st.lists(
    st.one_of(
        st.tuples(
            st.one_of(st.from_regex(CAMERA_NAME), toml_values),
            st.one_of(
                st.sampled_from(
                    [
                        "/var/lib/cam.mp4",
                        "file:///tmp/x.mp4",
                        "rtsp://10.0.0.2/stream1",
                        f"rtsp://admin:{PASSWORD}@10.0.0.2/s",
                        f"rtsp://admin:{PASSWORD}@@10.0.0.2/s",
                    ]
                ),
                toml_values,
            ),
            settings_table(CameraConfig, skip=("name", "url", "mask", "motion", "clip")),
            st.one_of(st.lists(points, max_size=3), toml_values),
            st.sampled_from([(), ("name",), ("url",), ("mask",)]),
        ).map(
            lambda t: {
                k: v
                for k, v in {"name": t[0], "url": t[1], "mask": t[3], **t[2]}.items()
                if k not in t[4]
            }
        ),
        toml_values,
    ),
    max_size=3,
)


@st.composite
def documents(draw) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name, cls in _section_types().items():
        if draw(st.booleans()):
            doc[name] = draw(st.one_of(settings_table(cls), settings_table(cls), toml_values))
    if draw(st.booleans()):
        doc["cameras"] = draw(st.one_of(cameras, cameras, toml_values))
    if draw(st.integers(0, 9)) == 9:  # rarely (hypothesis favours the low end)
        doc[draw(st.text(min_size=1, max_size=8))] = draw(toml_values)
    return doc


# -- a TOML writer (inline tables throughout: any key, any nesting) --------------------------


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_text(doc: dict[str, Any]) -> str:
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict):  # a real [section] header, as people write it
            lines.append(f"[{_string(key)}]")
            lines += [f"{_string(k)} = {toml_value(v)}" for k, v in value.items()]
        else:
            lines.insert(0, f"{_string(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
