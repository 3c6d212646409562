"""The one exception base of the product.

Every failure a user can act on (a bad option, a missing data set, a model that cannot be built) raises a
subclass of `QresafeError` whose first message line says what is wrong and what to do next; the CLI prints
that line and exits 1. Anything else is a bug and keeps its traceback behind QRESAFE_DEBUG=1.
"""

from __future__ import annotations


class QresafeError(Exception):
    """A user-facing failure: its first line is the whole message the CLI prints."""
