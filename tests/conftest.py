"""pytest configuration: shared fixtures live in small modules imported here."""

from world_fixtures import small_world  # noqa: F401
