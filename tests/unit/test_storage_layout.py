"""Object keys: the layout of a job's objects and the keys every backend refuses."""

from __future__ import annotations

import pytest

from common.storage.layout import (
    JOB_OBJECT_PREFIXES,
    background_key,
    input_key,
    job_prefix,
    result_key,
    validate_key,
)

JOB = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_every_job_object_lives_under_a_retention_prefix() -> None:
    keys = [input_key(JOB), background_key(JOB), result_key(JOB, "composite.jpg"), result_key(JOB, "mask.png")]
    for key in keys:
        validate_key(key)
        assert key.startswith(JOB_OBJECT_PREFIXES)
    for prefix in job_prefix(JOB):
        validate_key(prefix, prefix=True)
        assert prefix.startswith(JOB_OBJECT_PREFIXES)


def test_job_prefix_covers_exactly_the_jobs_objects() -> None:
    prefixes = job_prefix(JOB)
    mine = [input_key(JOB), background_key(JOB), result_key(JOB, "composite.jpg")]
    other = "1f8fad5b-d9cb-469f-a165-70867728950e"
    theirs = [input_key(other), background_key(other), result_key(other, "composite.jpg")]
    assert all(any(key.startswith(prefix) for prefix in prefixes) for key in mine)
    assert not any(key.startswith(prefix) for prefix in prefixes for key in theirs)


@pytest.mark.parametrize("key", ["inputs/abc", "results/abc/composite.jpg", "a", "a b/c", "zoë/ünïcode.png"])
def test_valid_keys_are_accepted(key: str) -> None:
    validate_key(key)


@pytest.mark.parametrize(
    "key", ["", "/absolute", "a/", "a//b", "./a", "a/./b", "..", "a/../b", "a\\b", "a\x00b", "a/\nb", "a\x7fb"]
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        validate_key(key)


def test_a_prefix_may_end_with_a_slash_but_a_key_may_not() -> None:
    validate_key("results/abc/", prefix=True)
    with pytest.raises(ValueError):
        validate_key("results/abc/")
    for bad in ("/", "results//", "../", "results/../"):
        with pytest.raises(ValueError):
            validate_key(bad, prefix=True)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\nb", "a\x7f"])
def test_key_builders_refuse_unsafe_segments(bad: str) -> None:
    for build in (input_key, background_key, job_prefix, lambda job: result_key(job, "composite.jpg")):
        with pytest.raises(ValueError):
            build(bad)
    with pytest.raises(ValueError):
        result_key(JOB, bad)
