"""Fleet documents, pure: signatures over exact bytes, shape, merging, validation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import fleetdoc
from agent.config import ConfigError, parse
from agent.fleetdoc import FleetDocError

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
PUB = fleetdoc.public_key_line(KEY)
GROUP = "group:east"

DOC = b"""version = 3
target = "group:east"
[motion]
threshold = 14
[[cameras]]
name = "door"
clip.post_roll = 9
"""

LOCAL = {
    "agent": {"device_id": "gw1"},
    "motion": {"threshold": 10.0, "min_area": 0.5},
    "cameras": [
        {"name": "door", "url": "rtsp://u:p@10.0.0.2/s", "motion": {"threshold": 30}},
        {"name": "yard", "url": "rtsp://10.0.0.3/s"},
    ],
}


def test_a_signed_document_verifies_and_parses():
    doc = fleetdoc.read(DOC, fleetdoc.sign(DOC, KEY), [PUB], GROUP)
    assert (doc.target, doc.version, doc.kind, doc.label) == (GROUP, 3, "group", "group:east@3")
    assert doc.body["motion"] == {"threshold": 14}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.replace(b"14", b"15"),  # a value changed
        lambda d: d + b"\n",  # even a harmless newline: the exact bytes are signed
        lambda d: d.replace(b"version = 3", b"version = 4"),
    ],
)
def test_any_change_to_the_bytes_breaks_the_signature(mutate):
    with pytest.raises(FleetDocError, match="bad signature"):
        fleetdoc.read(mutate(DOC), fleetdoc.sign(DOC, KEY), [PUB], GROUP)


def test_a_signature_by_an_unknown_key_is_refused():
    with pytest.raises(FleetDocError, match="none of the 1 public key"):
        fleetdoc.read(DOC, fleetdoc.sign(DOC, OTHER), [PUB], GROUP)


def test_key_rotation_accepts_either_listed_key():
    keys = [PUB, fleetdoc.public_key_line(OTHER)]
    assert fleetdoc.verify(DOC, fleetdoc.sign(DOC, KEY), keys) == 0
    assert fleetdoc.verify(DOC, fleetdoc.sign(DOC, OTHER), keys) == 1


@pytest.mark.parametrize("sig", [b"", b"not base64!!", b"AAAA\n", b"A" * 2000])
def test_a_malformed_signature_file_is_refused(sig):
    with pytest.raises(FleetDocError, match="signature"):
        fleetdoc.read(DOC, sig, [PUB], GROUP)


def test_an_oversized_document_is_refused_before_anything_else():
    big = DOC + b"#" * fleetdoc.MAX_DOC_BYTES
    with pytest.raises(FleetDocError, match="limit is"):
        fleetdoc.read(big, fleetdoc.sign(big, KEY), [PUB], GROUP)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'target = "group:east"\n', "version = None"),
        (b'version = 0\ntarget = "group:east"\n', "version = 0"),
        (b'version = true\ntarget = "group:east"\n', "version = True"),
        (b"version = 2\n", "target = None"),
        (b'version = 2\ntarget = "group:west"\n', "this document is for 'group:east'"),
        (b'version = 2\ntarget = "region:x"\n', "target = 'region:x'"),
        (b'version = 2\ntarget = "group:east"\n[agent]\ndata_dir = "/"\n', "'agent' is local"),
        (b'version = 2\ntarget = "group:east"\n[fleet]\nenabled = false\n', "'fleet' is local"),
        (b'version = 2\ntarget = "group:east"\n[cloud]\nbucket = "x"\n', "'cloud' is local"),
        (b'version = 2\ntarget = "group:east"\n[[cameras]]\nurl = "x"\n', "each with a name"),
        (b"version = = 2", "not valid TOML"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_documents_of_the_wrong_shape_are_refused_with_the_reason(text, message):
    with pytest.raises(FleetDocError, match=message.replace("(", r"\(")):
        fleetdoc.read(text, fleetdoc.sign(text, KEY), [PUB], GROUP)


def test_merge_lays_group_then_device_over_the_local_file():
    group = fleetdoc.parse_doc(DOC)
    device = fleetdoc.parse_doc(
        b'version = 1\ntarget = "device:gw1"\n[motion]\nthreshold = 20\n'
        b'[[cameras]]\nname = "gate"\nurl = "rtsp://10.0.0.4/s"\n'
    )
    merged = fleetdoc.merge(LOCAL, [group, device])
    assert merged["motion"] == {"threshold": 20, "min_area": 0.5}  # key by key, device last
    door, yard, gate = merged["cameras"]
    assert door["url"] == "rtsp://u:p@10.0.0.2/s" and door["clip"] == {"post_roll": 9}
    assert door["motion"] == {"threshold": 30}  # the camera's own override stays
    assert yard == LOCAL["cameras"][1]
    assert gate["name"] == "gate"  # an unknown name adds a camera
    assert LOCAL["motion"] == {"threshold": 10.0, "min_area": 0.5}, "the input was modified"


def test_effective_validates_the_merged_config_and_names_the_version():
    group = fleetdoc.parse_doc(DOC)
    config = fleetdoc.effective(LOCAL, [group], "/etc/ipc-agent/agent.toml")
    assert config.version == "group:east@3"
    assert config.source == "/etc/ipc-agent/agent.toml + group:east@3"
    assert config.camera("yard").motion.threshold == 14  # the group's global setting
    assert config.camera("door").clip.post_roll == 9
    assert fleetdoc.effective(LOCAL, [], "x").version == "local"


def test_an_invalid_value_in_a_document_fails_validation_naming_the_key():
    bad = fleetdoc.parse_doc(b'version = 4\ntarget = "group:east"\n[clip]\npost_roll = -1\n')
    with pytest.raises(ConfigError, match=r"\[clip\] post_roll = -1"):
        fleetdoc.effective(LOCAL, [bad], "agent.toml")


def test_check_validates_a_document_alone_with_stand_in_urls():
    assert fleetdoc.check(DOC, "east.toml").version == 3
    bad = DOC.replace(b"clip.post_roll = 9", b"clip.post_roll = 9000")
    with pytest.raises(FleetDocError, match="post_roll = 9000"):
        fleetdoc.check(bad, "east.toml")


def test_fleet_settings_are_validated():
    ok = parse(
        {
            "cloud": {"region": "cn-hangzhou", "bucket": "b-1", "search_lib": "IPCamera_x"},
            "fleet": {"enabled": True, "group": "east", "public_keys": [PUB]},
        }
    )
    assert ok.fleet.public_keys == (PUB,) and ok.fleet.poll_interval == 60
    with pytest.raises(ConfigError, match=r"public_keys = \['abc'\]: expected a list of base64"):
        parse({"fleet": {"public_keys": ["abc"]}})
    with pytest.raises(ConfigError, match="needs public_keys"):
        parse({"fleet": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"needs a \[cloud\] section"):
        parse({"fleet": {"enabled": True, "public_keys": [PUB]}})
    with pytest.raises(ConfigError, match="group = 'a b'"):
        parse({"fleet": {"group": "a b"}})


def test_config_check_explains_a_fleet_document(tmp_path, capsys):
    from agent.cli import main

    good = tmp_path / "east.toml"
    good.write_bytes(DOC)
    assert main(["config", "check", str(good)]) == 0
    assert "OK, fleet document group:east@3 carrying motion, cameras" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = 4\ntarget = "group:east"\n[agent]\nlog_level = "debug"\n[clip]\nmax_clip = 1\n'
    )
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'agent' is local to each gateway and cannot be pushed" in err
    bad.write_text('version = 4\ntarget = "group:east"\n[clip]\nmax_clip = 1\n')
    assert main(["config", "check", str(bad)]) == 2
    assert "[clip] max_clip = 1: expected a number from 2.0 to 3600.0" in capsys.readouterr().err
