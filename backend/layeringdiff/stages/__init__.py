"""Pipeline stages: plain functions taking arrays and explicit models."""
