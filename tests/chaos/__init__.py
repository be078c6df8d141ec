"""The chaos suite: real workers under real faults, then the invariants (see README.md)."""
