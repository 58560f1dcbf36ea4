"""pytest configuration: shared fixtures live in small modules imported here."""

from slurm_fixture import slurm_local  # noqa: F401
from world_fixtures import local_run, small_world  # noqa: F401
