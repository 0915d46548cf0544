"""Road region of interest: box geometry and tiling (``geometry``), the weight-free road finder (``offline``)."""
