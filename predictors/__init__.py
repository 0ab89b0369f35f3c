"""Response-length and GPU-duration predictors (issue 4; not built yet)."""
