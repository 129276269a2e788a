"""Shapes, spatial tests and the coordinate systems used by Chinese maps (WGS-84, GCJ-02, BD-09)."""
