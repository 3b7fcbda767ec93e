"""Import attnmace from another checkout (for before/after timings of the same script)."""

import sys


def use_checkout(path: str) -> None:
    """Make ``import attnmace`` load the package in ``path``, not the installed (editable) one.

    Call before anything imports attnmace.
    """
    if "attnmace" in sys.modules:
        raise RuntimeError("attnmace is already imported: call use_checkout first")
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, path)
