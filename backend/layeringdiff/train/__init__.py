"""Training of the layering stage (FBDD, HFA) and the data it learns from."""
