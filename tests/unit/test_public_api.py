"""The public surface: ``import tasktrail`` gives what applications write code against,
stays light, and the names that moved still resolve (with a warning) for one release."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import tasktrail

# Each name an application may import from the package, and the module it is defined in.
PUBLIC = {
    "App": "tasktrail.app",
    "JobHandle": "tasktrail.app",
    "Task": "tasktrail.task",
    "Job": "tasktrail.job",
    "Event": "tasktrail.job",
    "Ref": "tasktrail.job",
    "RetryPolicy": "tasktrail.retry",
    "WorkerConfig": "tasktrail.worker.config",
    "JobContext": "tasktrail.context",
    "current_job": "tasktrail.context",
    "Tick": "tasktrail.schedule",
    "TasktrailError": "tasktrail.errors",
    "AppImportError": "tasktrail.errors",
    "BackendUnavailable": "tasktrail.errors",
    "ConfigurationError": "tasktrail.errors",
    "InvalidArguments": "tasktrail.errors",
    "InvalidPayload": "tasktrail.errors",
    "InvalidTransition": "tasktrail.errors",
    "JobNotFound": "tasktrail.errors",
    "PermissionDenied": "tasktrail.errors",
    "ScheduleNotFound": "tasktrail.errors",
    "SchemaError": "tasktrail.errors",
    "UnknownTask": "tasktrail.errors",
}


def test_the_package_exports_exactly_the_public_names() -> None:
    assert sorted(tasktrail.__all__) == sorted(PUBLIC)
    for name, module in PUBLIC.items():
        assert getattr(tasktrail, name) is getattr(importlib.import_module(module), name)


def test_every_error_is_a_tasktrail_error() -> None:
    errors = importlib.import_module("tasktrail.errors")
    for name, module in PUBLIC.items():
        value = getattr(tasktrail, name)
        if module == "tasktrail.errors":
            assert issubclass(value, tasktrail.TasktrailError), name
    assert {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, tasktrail.TasktrailError)
    } <= set(PUBLIC), "an error class is missing from the public surface"


def test_importing_the_package_loads_no_worker_driver_or_console() -> None:
    """An enqueue-only process or a web app does not pay for the supervisor, its pool,
    psycopg or rich (checked in a fresh interpreter: this one has loaded them all)."""
    probe = (
        "import json, sys, tasktrail\n"
        "app = tasktrail.App('sqlite:///:memory:')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    heavy = {
        "tasktrail.worker.supervisor",
        "tasktrail.worker.pool",
        "tasktrail.worker.flow",
        "tasktrail.worker.child",
        "tasktrail.cli",
        "tasktrail.dashboard",
        "psycopg",
        "rich",
        "click",
    }
    assert not heavy & loaded, f"import tasktrail loaded {sorted(heavy & loaded)}"


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("Backend", "tasktrail.backends"),
        ("JobFilter", "tasktrail.backends"),
        ("TaskStats", "tasktrail.backends"),
        ("open_backend", "tasktrail.backends"),
        ("NewJob", "tasktrail.job"),
        ("Outcome", "tasktrail.job"),
        ("WorkerRecord", "tasktrail.job"),
    ],
)
def test_a_moved_name_still_resolves_with_a_warning_naming_its_new_home(
    name: str, module: str
) -> None:
    with pytest.warns(DeprecationWarning, match=rf"tasktrail\.{name} moved to {module}\.{name}"):
        value = getattr(tasktrail, name)
    assert value is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tasktrail.Nope  # noqa: B018


def test_the_supervisor_loads_on_first_use() -> None:
    from tasktrail.worker import Supervisor
    from tasktrail.worker.supervisor import Supervisor as defined

    assert Supervisor is defined
