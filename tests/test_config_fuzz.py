"""Property-based fuzzing of the config file: it loads, or fails with a ConfigError naming the
key — never another exception, never a message that is unbounded or leaks a password.

Documents are generated from the settings dataclasses themselves (every section and key the
agent knows, values near and far from what is allowed, unknown keys, wrong nesting), written
out as TOML text by a small writer (both in tests/support/config_fuzz.py), and also mangled as
text (cut short, characters spliced in) to exercise the TOML reader's error paths.
"""

from __future__ import annotations

import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import Config, ConfigError, dump, load, parse
from tests.support.config_fuzz import FUZZ, PASSWORD, documents, toml_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_PROBLEM_CHARS = 400  # one problem line an operator reads; a megabyte of echoed junk is no help


# -- the properties ------------------------------------------------------------------------


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def check_error(exc: ConfigError, doc: dict[str, Any], source: str) -> None:
    message = str(exc)
    assert message.startswith(source), f"the message does not name the file: {message[:200]}"
    assert PASSWORD not in message, f"a password leaked: {message[:300]}"
    assert exc.problems, "a ConfigError without problems"
    keys = _keys(doc)
    for problem in exc.problems:
        assert len(problem) <= MAX_PROBLEM_CHARS, f"{len(problem)} chars: {problem[:200]}..."
        assert any(k and k[:20] in problem for k in keys), f"no key named in: {problem!r}"


def check_config(config: Config) -> None:
    """A config that loads is usable, and `config show` prints TOML that loads back to it."""
    text = dump(config)
    assert PASSWORD not in text
    again = parse(tomllib.loads(text.replace("admin:***@", f"admin:{PASSWORD}@")), config.source)
    for name in ("agent", "motion", "clip", "cloud", "upload"):
        assert getattr(again, name) == getattr(config, name), name
    assert again.cameras == config.cameras


@FUZZ
@given(doc=documents())
def test_any_document_loads_or_fails_naming_the_key(doc):
    try:
        config = parse(doc, "fuzz.toml")
    except ConfigError as exc:
        check_error(exc, doc, "fuzz.toml")
    else:
        check_config(config)


@FUZZ
@given(doc=documents(), cut=st.integers(0, 10**6), splice=st.text(max_size=6))
def test_any_file_loads_or_fails_with_a_config_error(tmp_path_factory, doc, cut, splice):
    text = toml_text(doc)
    path = tmp_path_factory.getbasetemp() / "fuzz-agent.toml"
    for variant in (text, text[: cut % (len(text) + 1)] + splice + text[cut % (len(text) + 1) :]):
        path.write_text(variant, encoding="utf-8")
        try:
            config = load(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(str(path)), message[:200]
            assert PASSWORD not in message, message[:300]
        else:
            check_config(config)


def test_pathological_files_fail_with_a_config_error(tmp_path):
    """What the generator above cannot reach: absurd nesting, absurd numbers, bad bytes."""
    cases = {
        "nested": "a = " + "[" * 5000 + "]" * 5000,
        "nested-table": "a = " + "{b = " * 3000 + "1" + "}" * 3000,
        "huge-int": "[clip]\nkeyframes = " + "9" * 5000,
        "huge-size": '[upload]\nmax_spool_bytes = "' + "9" * 400 + 'TiB"',
        "huge-rate": '[upload]\nbandwidth_limit = "' + "9" * 400 + 'Mbit"',
        "huge-keyframes": "[clip]\nkeyframes = 1" + "0" * 400,
        "nul-url": '[[cameras]]\nname = "a"\nurl = "/tmp/a\\u0000b.mp4"',
        "nul-data-dir": '[agent]\ndata_dir = "/var/\\u0000lib"',
        "slash-device": '[agent]\ndevice_id = "gw/../x"',
        "dot-device": '[agent]\ndevice_id = ".."',
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        try:
            load(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and len(message) < 1000, (name, message[:300])
        else:
            raise AssertionError(f"{name}: loaded, but the value is unusable")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[agent]\ndevice_id = "caf\xe9"\n')
    try:
        load(latin1)
    except ConfigError as exc:
        assert str(latin1) in str(exc)
    else:
        raise AssertionError("a file that is not UTF-8 loaded")


def test_the_generator_reaches_both_outcomes():
    """Guard against a fuzzer that only ever produces rejected (or only accepted) documents."""
    outcomes: set[str] = set()

    @settings(max_examples=200, deadline=None)
    @given(doc=documents())
    def run(doc):
        try:
            parse(doc)
            outcomes.add("loaded")
        except ConfigError:
            outcomes.add("rejected")

    run()
    assert outcomes == {"loaded", "rejected"}, outcomes
