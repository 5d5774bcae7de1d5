"""Property-based fuzzing of fleet documents: any document, signed or not, is accepted or
refused with a reason (FleetDocError / ConfigError), never another exception, and a refused
one changes nothing in the running configuration.

Documents are the config fuzzer's (tests/support/config_fuzz.py: every section and key the
agent knows, values near and far from what is allowed) with a version and a target added.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import fleetdoc
from agent.config import PUSHABLE, ConfigError
from agent.config_source import ConfigSource
from agent.fleetdoc import FleetDocError
from tests.support.config_fuzz import FUZZ, documents, toml_text, toml_values

KEY = Ed25519PrivateKey.generate()
PUB = fleetdoc.public_key_line(KEY)
TARGET = "group:east"


def local_source(tmp: Path) -> ConfigSource:
    path = tmp / "agent.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{tmp / "data"}"\ndevice_id = "gw1"\n'
        '[[cameras]]\nname = "door"\nurl = "rtsp://u:p@10.0.0.2/s"\n'
    )
    return ConfigSource(path)


# Small documents of allowed values, as operators mostly write them.
plausible = st.fixed_dictionaries(
    {},
    optional={
        "motion": st.fixed_dictionaries({}, optional={"threshold": st.floats(2, 128)}),
        "clip": st.fixed_dictionaries({}, optional={"post_roll": st.floats(0, 300)}),
        "upload": st.fixed_dictionaries({}, optional={"concurrency": st.integers(1, 16)}),
        "cameras": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["door", "yard"])},
                optional={"url": st.just("rtsp://10.0.0.3/s"), "timeout": st.floats(1, 300)},
            ),
            max_size=2,
        ),
    },
)


# Four times in five. Not `integers(0, 4)` != 0: hypothesis draws the bounds of a range far
# more often than its middle, which left half the documents without a version.
often = st.sampled_from([True, True, True, True, False])


@st.composite
def fleet_documents(draw) -> bytes:
    doc = draw(st.one_of(documents(), plausible))
    if draw(often):  # mostly only what may be pushed, so some documents pass
        doc = {k: v for k, v in doc.items() if k in PUSHABLE}
    if draw(often):
        doc["version"] = draw(
            st.one_of(st.integers(1, 10**6), st.integers(-2, 10**20), toml_values)
        )
    if draw(often):
        doc["target"] = draw(st.sampled_from([TARGET, TARGET, "group:west", "device:gw1", "x"]))
    return toml_text(doc).encode()


@FUZZ
@given(data=fleet_documents(), signed=st.booleans(), cut=st.integers(0, 40))
def test_any_document_is_accepted_or_refused_and_a_refusal_changes_nothing(
    tmp_path_factory, data, signed, cut
):
    source = local_source(tmp_path_factory.mktemp("fleet"))
    before, generation = source.config, source.generation
    sig = fleetdoc.sign(data, KEY) if signed else fleetdoc.sign(data[cut:] + b"x", KEY)
    try:
        doc = fleetdoc.read(data, sig, [PUB], TARGET)
    except FleetDocError as exc:
        assert str(exc) and len(str(exc)) < 2000
        assert signed or "bad signature" in str(exc)
        return
    assert signed and doc.target == TARGET and doc.version >= 1
    try:
        config = source.propose(doc)
    except ConfigError as exc:
        assert exc.problems
    else:
        assert config.version == f"{TARGET}@{doc.version}"
        assert config.agent == before.agent and config.cloud == before.cloud  # local only
    assert source.config is before and source.generation == generation, "proposing changed it"
    assert source.docs == {}


@FUZZ
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_the_reader(data):
    with contextlib.suppress(FleetDocError):  # anything else fails the test
        fleetdoc.read(data, fleetdoc.sign(data, KEY), [PUB], TARGET)


def test_the_generator_reaches_every_outcome(tmp_path):
    """Documents refused, accepted but invalid, and applied: otherwise the fuzzing proves little."""
    source = local_source(tmp_path)
    seen = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(fleet_documents())
    def sample(data):
        try:
            doc = fleetdoc.read(data, fleetdoc.sign(data, KEY), [PUB], TARGET)
        except FleetDocError:
            seen.add("refused")
            return
        try:
            source.propose(doc)
            seen.add("applied")
        except ConfigError:
            seen.add("invalid")

    sample()
    assert seen == {"refused", "invalid", "applied"}
