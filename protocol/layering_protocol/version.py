"""Bumped on any incompatible change of the envelope or of a message's fields."""

PROTOCOL_VERSION = 1
