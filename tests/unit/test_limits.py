"""The backend's limits (the job memory estimate: test_job_memory.py)."""

import pytest
from layeringdiff.limits import Limits, parse_size


@pytest.mark.parametrize("text,total,expected", [
    ("12G", None, 12 << 30), ("800M", None, 800 << 20), ("1.5g", None, 3 << 29), ("4096", None, 4096),
    ("64KiB", None, 64 << 10), ("60%", 1000, 600), ("100%", 1000, 1000),
])
def test_sizes(text, total, expected):
    assert parse_size(text, total) == expected


@pytest.mark.parametrize("text,total", [("", None), ("-1G", None), ("0", None), ("12X", None), ("60%", None),
                                        ("0%", 1000), ("101%", 1000), ("x%", 1000)])
def test_bad_sizes(text, total):
    with pytest.raises(ValueError):
        parse_size(text, total)


def test_defaults_follow_the_machine_and_the_pixel_limit():
    limits = Limits.make(max_pixels=10_000, max_memory=8 << 30)
    assert limits.max_message == 10_000 * 20 + (1 << 20)  # the largest valid split at that pixel limit
    assert limits.hard_message == limits.max_message + (64 << 20)  # room to answer an oversized one
    big = Limits.make(max_memory=8 << 30)
    assert big.max_message == 1 << 30  # at most 1/8 of the memory budget
    assert big.queued_input == 2 << 30
    assert Limits.make().max_memory > 0


def test_a_bad_size_says_what_a_size_looks_like_and_a_share_only_where_one_is_taken():
    with pytest.raises(ValueError) as info:
        parse_size("lots")
    assert str(info.value) == "'lots' is not a size: use e.g. 12G, 800M"
    with pytest.raises(ValueError) as info:
        parse_size("lots", total=100)
    assert str(info.value) == "'lots' is not a size: use e.g. 12G, 800M or 60%"
    with pytest.raises(ValueError, match="'0M' is not a size"):
        parse_size("0M")
    assert parse_size("1") == 1 and parse_size("0.5k") == 512  # the smallest sizes are sizes
