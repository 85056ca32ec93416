"""The wire codec (mesh.core.codec) means on the wire what kombu's own JSON means."""
import datetime as dt
import decimal
import math

import pytest
from kombu.utils import json as kombu_json

from mesh.core import codec

VALUES = [
    {"args": [], "kwargs": {"product_id": 1}},
    {"result": {"id": 1, "name": "Mug ☕", "items": [1, 2.5, None, True]}, "error": None},
    {"error": {"exc_type": "NotFound", "value": "x", "exc_args": ["x", {}]}, "result": None},
    {1: "int keys", "nested": {"deep": [[{"a": []}]]}},
    {"when": dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc),
     "naive": dt.datetime(2026, 11, 26, 12, 0), "day": dt.date(2026, 11, 26)},
    {"money": decimal.Decimal("12.50")},
    {"big": 2**70, "negative": -2**64},
    {"lone surrogate": "\ud800"},
    {"raw": b"bytes"},
    "a string", 12, None, [],
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_kombu_reads_what_the_codec_writes_and_the_other_way_round(value):
    expected = kombu_json.loads(kombu_json.dumps(value))
    assert kombu_json.loads(codec.dumps(value)) == expected
    assert codec.loads(kombu_json.dumps(value)) == expected
    assert codec.loads(codec.dumps(value)) == expected


def test_bytes_strings_and_buffers_all_decode():
    encoded = codec.dumps({"a": [1]})
    for data in (encoded, encoded.decode(), memoryview(encoded)):
        assert codec.loads(data) == {"a": [1]}


def test_what_kombu_cannot_encode_the_codec_refuses_too():
    with pytest.raises(TypeError):
        codec.dumps({"x": object()})


def test_not_a_number_reads_as_kombu_reads_it():
    assert math.isnan(codec.loads(b'{"x": NaN}')["x"])
