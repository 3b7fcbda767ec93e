"""Training subpackage (see the training issue)."""
