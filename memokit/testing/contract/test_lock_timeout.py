"""OPTIONS['LOCK_TIMEOUT']: every backend takes it (the ``lock_lease=`` wait), and checks it."""

from __future__ import annotations

import pytest

from memokit import ImproperlyConfigured


def test_lock_timeout_is_an_option_of_every_backend(make_any_cache: object) -> None:
    assert make_any_cache().lock_timeout == 5.0  # type: ignore[operator]
    assert make_any_cache(OPTIONS={"LOCK_TIMEOUT": 0.25}).lock_timeout == 0.25  # type: ignore[operator]
    assert make_any_cache(OPTIONS={"lock_timeout": 2}).lock_timeout == 2.0  # type: ignore[operator]


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "5", None, False, 1e10])
def test_a_bad_lock_timeout_raises_at_once_naming_it(make_any_cache: object, value: object) -> None:
    with pytest.raises(
        ImproperlyConfigured, match=r"LOCK_TIMEOUT must be a number of seconds > 0 and at most"
    ):
        make_any_cache(OPTIONS={"LOCK_TIMEOUT": value})  # type: ignore[operator]
