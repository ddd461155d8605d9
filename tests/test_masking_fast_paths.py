"""The shortcuts that keep JSON body masking cheap give the same answers as the long way.

* String values are checked as free text together (one scan of them all), and only those the
  scan picks are checked one by one: the pick must include every value the per-value fast
  path would let through, and the masks must come out in walk order.
* A parsed, clean body is kept byte for byte when its text holds no more keys than the parser
  saw: ``holds_keys`` must agree with the regex count it shortcuts.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from spanlytics.masking import Masker, MaskingRules
from spanlytics.masking.json_scan import holds_keys, key_count

MASKER = Masker()

# Fragments that trigger (or nearly trigger) each part of the fast path: names, schemes,
# JWTs, URLs with credentials, card numbers, IBANs, escapes and case folds.
FRAGMENTS = (
    "password=hunter2",
    "token: abc123def",
    "Bearer sk_live_0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "https://user:pa55@example.com/x",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "compass and passport",
    "shipping company",
    "plain words here",
    "K\u212aelvin",
    "caf\u00e9 cr\u00e8me",
    "x" * 40,
    "\n",
)
text_values = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3).map(" ".join)


def test_some_of_many_values_is_a_superset_of_each_value_alone() -> None:
    values = [*FRAGMENTS, "ordinary", "DE89370400440532013000", "see https://a.example/"]
    picked = set(MASKER._may_match_some(values))
    for i, value in enumerate(values):
        if MASKER._may_match(value, credentials=True):
            assert i in picked, value


@settings(max_examples=150, deadline=None)
@given(st.lists(text_values, min_size=1, max_size=6))
def test_picked_values_cover_every_value_that_may_match(values: list[str]) -> None:
    picked = set(MASKER._may_match_some(values))
    assert {i for i, v in enumerate(values) if MASKER._may_match(v, credentials=True)} <= picked


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["note", "memo", "password", "comment"]), text_values, min_size=1))
def test_a_body_masks_as_each_of_its_values_would_alone(doc: dict[str, str]) -> None:
    body = json.dumps({"outer": doc, "list": list(doc.values())})
    masked, masks = MASKER.mask_body(body, "application/json", "request.body")
    assert masked is not None
    out = json.loads(masked)
    for key, value in doc.items():
        if MASKER._field_rule(key) is not None:
            assert out["outer"][key] == "[masked]"
            continue
        alone, found = MASKER.mask_text(value, f"request.body.outer.{key}")
        assert out["outer"][key] == alone
        assert all(f in masks for f in found)


def test_masks_keep_walk_order() -> None:
    body = json.dumps({"a": "Bearer sk_live_0123456789", "password": "x", "b": {"note": "token=abcdefgh"}})
    _, masks = MASKER.mask_body(body, "application/json", "request.body")
    assert [m.path for m in masks] == ["request.body.a", "request.body.password", "request.body.b.note"]


def test_custom_rules_check_each_value_alone() -> None:
    masker = Masker(MaskingRules(field_patterns=("^ref$",)))
    assert list(masker._may_match_some(["a", "b"])) == [0, 1]
    masked, _ = masker.mask_body('{"ref": "abc", "note": "ref=zzzzzzzz"}', "application/json", "request.body")
    assert json.loads(masked or "")["ref"] == "[masked]"


@given(
    st.lists(
        st.sampled_from(['"a":1', '"a" :1', '"a"\t:1', '"a"\u00a0:1', '"a":"b"', '"x\\":"', '" "', '":']),
        max_size=8,
    )
)
def test_holds_keys_agrees_with_the_key_count(parts: list[str]) -> None:
    text = "{" + ",".join(parts) + "}"
    count = key_count(text)
    for keys in (count - 1, count, count + 1):
        assert holds_keys(text, keys) == (count == keys)


def test_a_clean_body_is_kept_byte_for_byte_and_a_duplicate_key_is_not_trusted() -> None:
    clean = '{"name": "Anvil",  "tags": ["a", "b"]}'
    assert MASKER.mask_body(clean, "application/json", "request.body") == (clean, [])
    duplicate = '{"password": "hunter2", "password": null}'
    masked, _ = MASKER.mask_body(duplicate, "application/json", "request.body")
    assert "hunter2" not in (masked or "")
