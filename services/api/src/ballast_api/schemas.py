"""Limits shared by several domains of the api.

The request and response models themselves are the contract with the UI:
`ballast_common.contracts`.
"""

from __future__ import annotations

# Page numbers past this are refused (422): offsets must stay within a 64-bit integer
# on every backend, and nobody pages that far by hand.
MAX_PAGE = 1_000_000
