"""Datasets (2-D toys and images), their fixed splits and dequantization, and the FID feature backends."""
