"""Living with pvlib on a newer pandas."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_pandas_deprecations() -> Iterator[None]:
    """Silence pandas' deprecation warnings raised from pvlib's code (not ours to fix)."""
    # pvlib 0.16 still calls e.g. DatetimeIndex.dayofyear, deprecated in pandas 3.1; the tests
    # turn warnings into errors, and in production they would only be noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pandas\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pvlib\.")
        yield
