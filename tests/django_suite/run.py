"""Run Django's own shared cache tests (``BaseCacheTests``) against memokit's backends.

    python tests/django_suite/run.py [BACKEND ...]

Django's test package for its cache framework is taken from the source
distribution of a pinned Django version (``django_sdist.py``), never from this
repository. Each memokit backend in ``suite_backends.BACKENDS`` gets a test
class built from Django's ``BaseCacheTests``, configured the way Django
configures its own backends (seven aliases over one store), with every alias
pointing at ``memokit.contrib.django.MemokitCache``. Django's ``DiscoverRunner``
runs them; warnings are errors.

The run prints, per backend, how many of Django's tests passed as Django wrote
them, how many were replaced by memokit's version (``suite_overrides.py``) and
passed, and how many skipped. It fails on any failure, on a skip that Django
would not make for that backend, and on a test count that is not Django's.

Without Django, offline, or without a server binary, the run (or that backend)
is skipped with the reason; with ``MEMOKIT_REQUIRE_SERVERS=1`` it fails instead,
and under CI (``CI`` set, as CI services set it) a run without Django's suite
(Django missing, or its sources not downloadable) fails too.
Settings are process-global in Django, which is why this is a runner of its own
and not part of the main pytest run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import unittest
from dataclasses import dataclass
from typing import Any

ADAPTER = "memokit.contrib.django.MemokitCache"
REQUIRE_SERVERS = os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1"
# Under CI a run whose Django suite silently did not run would look green.
UNDER_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> int:
    """Skip the whole run with the reason, or fail when skipping is forbidden."""
    if REQUIRE_SERVERS or UNDER_CI:
        forbidden_by = "MEMOKIT_REQUIRE_SERVERS=1" if REQUIRE_SERVERS else f"CI={os.environ['CI']}"
        print(f"django suite: FAILED: {reason} ({forbidden_by} forbids skipping)")
        return 1
    print(f"django suite: SKIPPED: {reason}")
    return 0


def _configure_django() -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        # "cache" is Django's test package: its Poll model is used by three tests.
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        CACHES={"default": {"BACKEND": ADAPTER, "LOCATION": "django-suite-idle"}},
        SECRET_KEY="memokit-django-suite-not-secret",  # noqa: S106 - a test run's key
        USE_TZ=True,
        LANGUAGE_CODE="en",  # as Django's runtests.py
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()


@dataclass
class Outcome:
    """What happened to one backend's run."""

    backend: str
    total: int = 0
    passed: int = 0
    replaced: int = 0
    skipped: int = 0
    failed: int = 0
    problems: tuple[str, ...] = ()
    unavailable: str = ""

    def line(self) -> str:
        if self.unavailable:
            return f"{self.backend:<12} SKIPPED: {self.unavailable}"
        return (
            f"{self.backend:<12} {self.total} tests: {self.passed} passed as Django wrote them, "
            f"{self.replaced} replaced by memokit's version and passed, "
            f"{self.skipped} skipped, {self.failed} failed"
        )


def _test_name(test: Any) -> str:
    # A failing subTest reports a _SubTest; its test_case is the real test.
    return str(getattr(test, "test_case", test)._testMethodName)


@dataclass(frozen=True)
class Conformance:
    """A backend's test class and what Django's suite is told about the backend."""

    cls: type[unittest.TestCase]
    replaced: frozenset[str]
    expected_skips: frozenset[str]


def _conformance_class(entry: Any, make_location: Any) -> Conformance:
    from cache.tests import BaseCacheTests, caches_setting_for_tests
    from django.test import TestCase, override_settings
    from suite_overrides import derived_exclude, derived_overrides, replaced_tests

    from memokit.config import get_backend_class

    capabilities = get_backend_class(entry.name).capabilities
    overrides = derived_overrides(capabilities) if entry.overrides is None else entry.overrides
    exclude = derived_exclude(capabilities) if entry.exclude is None else entry.exclude
    options = {"BACKEND": entry.name, **entry.options}

    def setUp(self: unittest.TestCase) -> None:
        super(cls, self).setUp()
        setting = caches_setting_for_tests(
            BACKEND=ADAPTER, LOCATION=make_location(self), exclude=set(exclude)
        )
        for params in setting.values():
            # Django's cull aliases bring their own OPTIONS; memokit's go beside them.
            params["OPTIONS"] = {**options, **params.get("OPTIONS", {})}
        # Enabled per test, not per class, so that each test gets a fresh LOCATION.
        overridden = override_settings(CACHES=setting)
        overridden.enable()
        self.addCleanup(overridden.disable)

    cls = type(
        f"Memokit{entry.name.title()}BaseCacheTests",
        (*overrides, BaseCacheTests, TestCase),
        {
            "setUp": setUp,
            "incr_decr_type_error": entry.incr_decr_type_error,
            "__module__": "memokit_django_suite",
        },
    )
    return Conformance(cls, replaced_tests(overrides), _skips_for(exclude))


def _skips_for(exclude: frozenset[str]) -> frozenset[str]:
    # Django's culling tests skip themselves when their alias is not configured.
    skips = set()
    if "cull" in exclude:
        skips |= {"test_cull", "test_cull_delete_when_store_empty"}
    if "zero_cull" in exclude:
        skips.add("test_zero_cull")
    return frozenset(skips)


def _run_backend(runner: Any, entry: Any, django_tests: list[str]) -> Outcome:
    from memokit.testing import ServerNotFound

    outcome = Outcome(entry.name)
    with contextlib.ExitStack() as stack:
        try:
            make_location = entry.locations(stack)
        except ServerNotFound as exc:
            outcome.unavailable = str(exc)
            return outcome
        conformance = _conformance_class(entry, make_location)
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(conformance.cls)
        result = runner.run_suite(suite)

    problems = []
    failed = {_test_name(t) for t, _ in [*result.failures, *result.errors]}
    failed |= {_test_name(t) for t in result.unexpectedSuccesses}
    skipped = {_test_name(t) for t, _ in result.skipped}
    ran = sorted(name for name in dir(conformance.cls) if name.startswith("test_"))
    if ran != django_tests:
        problems.append(f"ran {ran}, but Django's BaseCacheTests has {django_tests}")
    for name in sorted(skipped - conformance.expected_skips):
        problems.append(f"{name} skipped, but Django runs it for a backend like this one")
    for name in sorted(conformance.expected_skips - skipped):
        problems.append(f"{name} ran, but the backend declares it does not cull")
    outcome.total = result.testsRun
    outcome.failed = len(failed)
    outcome.skipped = len(skipped)
    outcome.replaced = len(conformance.replaced - failed - skipped)
    outcome.passed = result.testsRun - outcome.failed - outcome.skipped - outcome.replaced
    outcome.problems = tuple(problems)
    return outcome


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backends", nargs="*", help="memokit backends to run (default: all)")
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    args = parser.parse_args(argv)

    try:
        import django
    except ImportError:
        return _unavailable("Django is not installed; pip install 'memokit[test]'")
    from django_sdist import DJANGO_VERSION, Unavailable, django_tests_dir

    if django.__version__ != DJANGO_VERSION:
        return _unavailable(
            f"Django {django.__version__} is installed, but this run needs the Django whose "
            f"tests it downloads: pip install django=={DJANGO_VERSION}"
        )
    try:
        tests_dir = django_tests_dir()
    except (Unavailable, OSError, subprocess.SubprocessError) as exc:
        return _unavailable(f"Django's test suite could not be obtained: {exc}")
    sys.path.insert(0, str(tests_dir))  # Django's tests import themselves as "cache"
    _configure_django()

    from cache.tests import BaseCacheTests
    from django.test.runner import DiscoverRunner
    from suite_backends import BACKENDS

    class Runner(DiscoverRunner):
        def get_test_runner_kwargs(self) -> dict[str, Any]:
            return {**super().get_test_runner_kwargs(), "warnings": "error"}

    entries = [e for e in BACKENDS if not args.backends or e.name in args.backends]
    unknown = set(args.backends) - {e.name for e in BACKENDS}
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; known: {[e.name for e in BACKENDS]}")
    django_tests = sorted(name for name in dir(BaseCacheTests) if name.startswith("test_"))

    runner = Runner(verbosity=args.verbosity, interactive=False)
    runner.setup_test_environment()
    old_config = runner.setup_databases()
    try:
        outcomes = []
        for entry in entries:
            print(f"== Django {DJANGO_VERSION} BaseCacheTests on memokit's {entry.name} backend")
            outcomes.append(_run_backend(runner, entry, django_tests))
    finally:
        runner.teardown_databases(old_config)
        runner.teardown_test_environment()

    print(
        f"\nDjango {DJANGO_VERSION} BaseCacheTests ({len(django_tests)} tests) through {ADAPTER}:"
    )
    status = 0
    for outcome in outcomes:
        print("  " + outcome.line())
        for problem in outcome.problems:
            print(f"    PROBLEM: {problem}")
        if outcome.failed or outcome.problems or (outcome.unavailable and REQUIRE_SERVERS):
            status = 1
    # One plain closing line for the whole run, in the form CI reads.
    passed = sum(o.passed + o.replaced for o in outcomes)
    failed = sum(o.failed + len(o.problems) for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    print(f"django-suite: {passed} passed, {failed} failed, {skipped} skipped")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
