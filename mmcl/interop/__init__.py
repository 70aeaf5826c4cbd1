"""Moving mmcl models to and from other tools' formats (open_clip)."""
