"""The event vocabulary shared by importers, the generator and the profile.

Events are plain dicts shaped like ``schemas/event.avsc``; time is epoch
milliseconds (int, UTC) everywhere in the core.
"""

from __future__ import annotations

PRODUCT_VIEW = "product_view"
PAGE_VIEW = "page_view"
CLICK = "click"
SCROLL = "scroll"
DWELL = "dwell"
ADD_TO_CART = "add_to_cart"
REMOVE_FROM_CART = "remove_from_cart"
ADD_TO_WISHLIST = "add_to_wishlist"
PURCHASE = "purchase"
SEARCH = "search"
CONSENT_CHANGE = "consent_change"
CONSENT_REVOKED = "consent_revoked"
ERASURE_REQUESTED = "erasure_requested"

KNOWN_EVENT_TYPES = frozenset(
    {
        PRODUCT_VIEW,
        PAGE_VIEW,
        CLICK,
        SCROLL,
        DWELL,
        ADD_TO_CART,
        REMOVE_FROM_CART,
        ADD_TO_WISHLIST,
        PURCHASE,
        SEARCH,
        CONSENT_CHANGE,
        CONSENT_REVOKED,
        ERASURE_REQUESTED,
    }
)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def user_key(event: dict) -> str | None:
    """The key a user's state lives under: user_id, else ``anon:`` + anonymous_id.

    >>> user_key({"user_id": "42"})
    '42'
    >>> user_key({"user_id": None, "anonymous_id": "c-1"})
    'anon:c-1'
    >>> user_key({}) is None
    True
    """
    user_id = event.get("user_id")
    if user_id:
        return user_id
    anonymous_id = event.get("anonymous_id")
    if anonymous_id:
        return f"anon:{anonymous_id}"
    return None
