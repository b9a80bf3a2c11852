"""Every figure, grid, overlay and GIF. Reads tensors/arrays and result objects; no autograd."""
