"""Pure numpy/OpenCV image math: float32 arrays in [0, 1], HxWxC; alpha HxW."""
