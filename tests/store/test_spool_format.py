"""The spool's line format: what is written reads back as the same verification, alone or as a block, and any
other bytes are a ``ValueError``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spool_helpers import VERIFICATIONS
from store_helpers import CN

from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.checks import check_verification
from flask_otp_conversion.store.spool_format import decode, decode_block, encode, split_lines


@pytest.mark.parametrize("message_id", [None, "m-1", 'quote " backslash \\ newline \n tab \t', "é中文", "x" * 128])
def test_a_line_reads_back_as_the_verification_written(message_id: str | None) -> None:
    item = Verification(CN, message_id, 1_795_460_400.123456)
    line = encode(item)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == item


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=300))
def test_fuzz_the_decoder_returns_a_checked_verification_or_raises_value_error(data: bytes) -> None:
    try:
        item = decode(data)
    except ValueError:
        return
    assert check_verification(item) == item


@settings(max_examples=200, deadline=None, database=None)
@given(items=st.lists(VERIFICATIONS, min_size=1, max_size=20))
def test_fuzz_encoded_lines_decode_back_alone_and_as_a_block(items: list[Verification]) -> None:
    block = b"".join(map(encode, items))
    assert [decode(line) for line in split_lines(block)] == items
    assert decode_block(block) == items
