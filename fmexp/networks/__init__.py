"""Velocity networks ``v(x, t)``: the MLP for flat data and the U-Net for images."""
