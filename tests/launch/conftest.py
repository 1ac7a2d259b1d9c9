"""Fixtures of the run tests: the real single-node SLURM, started once per session."""

from __future__ import annotations

import os

import pytest
import slurm_cluster


@pytest.fixture(scope="session")
def cluster():
    """A running SLURM (munged, slurmctld, slurmd); its SLURM_CONF is in `slurm.env()`."""
    missing = slurm_cluster.missing_programs()
    if missing or os.geteuid() != 0:
        reason = (
            f"SLURM TESTS NOT RUN: {', '.join(missing) or 'root'} missing; install Debian's "
            "slurmctld slurmd slurm-client munge and run as root (.ci/run does both)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = slurm_cluster.start()
    yield cluster
    slurm_cluster.stop(cluster)
