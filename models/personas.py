"""A seeded synthetic clickstream from known personas, for the demo and for tests.

``generate(events, users, seed)`` returns a bounded list of event dicts shaped
exactly like ``schemas/event.avsc`` (every field present, ``None`` where
unused, timestamps in epoch milliseconds UTC) and the ground truth
``{user_id: persona}``, so that a test or a demo can check that the pipeline
recognises who is who.

The output is a pure function of the arguments: one ``random.Random(seed)``
drives every choice (the global ``random`` is never touched), event ids are
``gen-{seed}-{n}``, and nothing reads the clock or the environment, so the same
arguments give byte-identical output on any machine.

The personas (``PERSONAS``), and what gives each away in the data:

* ``bargain_hunter``: deal searches, views mostly of cheap discounted items.
* ``high_intent_buyer``: long, deep views in one category, then cart and purchase.
* ``cart_abandoner``: views and add_to_cart in every session, never a purchase.
* ``window_shopper``: many short, shallow views across categories, no cart.
* ``returning_loyal``: sessions days to weeks apart, purchases of one favourite brand.
* ``searcher_frustrated``: searches with few or no results, never a product view.

Each user's first session carries its persona's signature (a purchase, a cart,
...) even when the event budget is tiny; with a few events per user the rest
of the picture is thin, so demos want tens of events per user.

What the stream looks like:

* Each user follows one persona, assigned round-robin and then shuffled, so
  every persona is present once there are six users or more.
* A user's events come in sessions: gaps inside a session are well under
  30 minutes, gaps between sessions are over 30 minutes (days or weeks for
  ``returning_loyal``). Sessions start in the user's waking hours.
* Products come from a small fixed ``CATALOGUE``; a discounted product has a
  ``list_price`` above its ``price``, the others have ``list_price`` None.
* Events are emitted roughly in time order: each is sorted by an arrival time
  up to ``MAX_DELAY_MS`` after its event time, so neighbours may swap.
* A share of events (``duplicate_share``, 1% by default, rounded down) is
  emitted a second time with the same ``event_id`` and content, up to
  ``MAX_RETRY_DELAY_MS`` later, as a client retry would; they count towards
  ``events``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from models import events as ev

BARGAIN_HUNTER = "bargain_hunter"
HIGH_INTENT_BUYER = "high_intent_buyer"
CART_ABANDONER = "cart_abandoner"
WINDOW_SHOPPER = "window_shopper"
RETURNING_LOYAL = "returning_loyal"
SEARCHER_FRUSTRATED = "searcher_frustrated"

PERSONAS = (
    BARGAIN_HUNTER,
    HIGH_INTENT_BUYER,
    CART_ABANDONER,
    WINDOW_SHOPPER,
    RETURNING_LOYAL,
    SEARCHER_FRUSTRATED,
)

# The fields of schemas/event.avsc in schema order (a test keeps them in step).
EVENT_FIELDS = (
    "event_id",
    "user_id",
    "anonymous_id",
    "event_type",
    "timestamp",
    "session_id",
    "product_id",
    "category",
    "brand",
    "price",
    "list_price",
    "quantity",
    "query",
    "page",
    "scroll_depth",
    "dwell_ms",
    "device",
    "os",
    "country",
    "region",
    "timezone",
    "consent",
    "campaign",
    "properties",
    "email",
    "phone",
    "ip",
)

DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DEFAULT_DUPLICATE_SHARE = 0.01
SESSION_GAP_MS = 30 * ev.MINUTE_MS
MAX_DELAY_MS = 5_000
MAX_RETRY_DELAY_MS = 30_000
FIRST_SESSION_SPREAD_MS = 7 * ev.DAY_MS

# Timestamps the pipeline accepts (models.validation): 2000-01-01 to 2100-01-01 UTC.
_MIN_START_MS = 946_684_800_000
_MAX_START_MS = 4_102_444_800_000
_WAKE_HOUR = 7


@dataclass(frozen=True)
class Product:
    """One catalogue item; ``list_price`` is set (and above ``price``) when discounted."""

    product_id: str
    category: str
    brand: str
    price: float
    list_price: float | None

    @property
    def discounted(self) -> bool:
        """True when the item sells below its list price."""
        return self.list_price is not None and self.list_price > self.price


# (category, brands, base price)
_CATEGORIES = (
    ("shoes", ("strider", "pacefox", "urbanhoof"), 70.0),
    ("electronics", ("voltra", "nimbus", "auralink"), 180.0),
    ("books", ("inkwell", "pagecraft", "loomis"), 16.0),
    ("home", ("hearthly", "nordnest", "casabel"), 45.0),
    ("beauty", ("glowen", "purelle", "vantia"), 28.0),
    ("sports", ("peakform", "tidewave", "kinetix"), 55.0),
)
_PRICE_FACTORS = (0.55, 0.8, 1.0, 1.25, 1.6, 2.4)
_DISCOUNTS = (0.15, 0.25, 0.4)


def _build_catalogue() -> tuple[Product, ...]:
    """Two products per (category, brand); every other one discounted. No randomness."""
    products = []
    for category, brands, base in _CATEGORIES:
        for b, brand in enumerate(brands):
            for j in range(2):
                k = 2 * b + j
                full = round(base * _PRICE_FACTORS[k], 2)
                product_id = f"p-{category}-{k + 1}"
                if (b + j) % 2 == 0:
                    price = round(full * (1 - _DISCOUNTS[k % len(_DISCOUNTS)]), 2)
                    products.append(Product(product_id, category, brand, price, full))
                else:
                    products.append(Product(product_id, category, brand, full, None))
    return tuple(products)


CATALOGUE = _build_catalogue()
CATEGORIES = tuple(category for category, _, _ in _CATEGORIES)
BRANDS = tuple(brand for _, brands, _ in _CATEGORIES for brand in brands)
_BY_CATEGORY = {c: tuple(p for p in CATALOGUE if p.category == c) for c in CATEGORIES}
_BY_BRAND = {b: tuple(p for p in CATALOGUE if p.brand == b) for b in BRANDS}
_DISCOUNTED = tuple(p for p in CATALOGUE if p.discounted)

# (country, IANA time zone, standard UTC offset in minutes). The offset only
# places sessions in waking hours; it ignores daylight saving on purpose, so
# the output does not depend on the machine's time zone database.
_LOCALES = (
    ("DE", "Europe/Berlin", 60),
    ("FR", "Europe/Paris", 60),
    ("GB", "Europe/London", 0),
    ("ES", "Europe/Madrid", 60),
    ("PL", "Europe/Warsaw", 60),
    ("US", "America/New_York", -300),
    ("US", "America/Los_Angeles", -480),
    ("BR", "America/Sao_Paulo", -180),
    ("JP", "Asia/Tokyo", 540),
    ("IN", "Asia/Kolkata", 330),
    ("AU", "Australia/Sydney", 600),
)
# How a shop's users spread over _LOCALES (percent, in their order): one home market
# (a German shop), its neighbours, and a long tail abroad; a bias audit by country or
# region meets groups of every size, some too small to judge.
_LOCALE_WEIGHTS = (38, 11, 12, 7, 6, 9, 5, 4, 3, 3, 2)
# (device, operating systems, weight)
_DEVICES = (
    ("mobile", ("iOS", "Android"), 55),
    ("desktop", ("Windows", "macOS", "Linux"), 35),
    ("tablet", ("iPadOS", "Android"), 10),
)
# The device a persona's users keep (mobile, desktop, tablet weights): shoppers who
# browse are mostly on phones, buyers who know what they want more often at a desk,
# so a bias audit by device has a real difference to find. About 55/35/10 overall.
_PERSONA_DEVICES = {
    BARGAIN_HUNTER: (65, 25, 10),
    HIGH_INTENT_BUYER: (30, 60, 10),
    CART_ABANDONER: (70, 20, 10),
    WINDOW_SHOPPER: (70, 15, 15),
    RETURNING_LOYAL: (45, 45, 10),
    SEARCHER_FRUSTRATED: (50, 45, 5),
}
# The region (ISO 3166-2) of each time zone of _LOCALES.
_REGIONS = {
    "Europe/Berlin": "DE-BE",
    "Europe/Paris": "FR-IDF",
    "Europe/London": "GB-ENG",
    "Europe/Madrid": "ES-MD",
    "Europe/Warsaw": "PL-14",
    "America/New_York": "US-NY",
    "America/Los_Angeles": "US-CA",
    "America/Sao_Paulo": "BR-SP",
    "Asia/Tokyo": "JP-13",
    "Asia/Kolkata": "IN-WB",
    "Australia/Sydney": "AU-NSW",
}

_BARGAIN_QUERIES = ("sale", "deals", "discount {c}", "cheap {c}", "{c} sale", "clearance {c}")
_NICHE_QUERIES = (
    "wirless earbuds waterproof",
    "vegan hiking boots size 47",
    "usb-c hub 9 port thunderbolt",
    "linen duvet cover super king",
    "left handed fountain pen",
    "fragrance free sunscreen spf 70",
    "carbon tent pole replacement",
    "retro game console 110v",
    "kids running shoes wide fit",
    "first edition poetry signed",
)


@dataclass(frozen=True)
class PersonaSpec:
    """How a persona's activity is sized and spaced.

    Attributes:
        weight: relative share of the event budget its users get.
        session_events: (min, max) events per session.
        session_gap_ms: (min, max) idle time between two of its sessions.
        campaign: campaign of a session's first event, for users who accept
            marketing; None for none.
        campaign_share: share of such users' sessions that carry it.
    """

    weight: float
    session_events: tuple[int, int]
    session_gap_ms: tuple[int, int]
    campaign: str | None = None
    campaign_share: float = 0.0


SPECS = {
    BARGAIN_HUNTER: PersonaSpec(1.2, (5, 12), (ev.HOUR_MS, 2 * ev.DAY_MS), "spring_sale", 0.3),
    HIGH_INTENT_BUYER: PersonaSpec(0.8, (5, 10), (2 * ev.HOUR_MS, 4 * ev.DAY_MS)),
    CART_ABANDONER: PersonaSpec(1.0, (4, 9), (ev.HOUR_MS, 3 * ev.DAY_MS)),
    WINDOW_SHOPPER: PersonaSpec(1.4, (8, 18), (45 * ev.MINUTE_MS, 2 * ev.DAY_MS), "social_ad", 0.1),
    RETURNING_LOYAL: PersonaSpec(
        0.9, (4, 8), (4 * ev.DAY_MS, 14 * ev.DAY_MS), "loyalty_newsletter", 0.4
    ),
    SEARCHER_FRUSTRATED: PersonaSpec(0.7, (3, 8), (40 * ev.MINUTE_MS, ev.DAY_MS)),
}


@dataclass(frozen=True)
class _User:
    """A simulated user's fixed traits."""

    user_id: str
    persona: str
    country: str
    timezone: str
    utc_offset_min: int
    device: str
    os: str
    marketing: bool
    category: str
    brand: str


def generate(
    events: int,
    users: int,
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    *,
    duplicate_share: float = DEFAULT_DUPLICATE_SHARE,
) -> tuple[list[dict], dict[str, str]]:
    """A synthetic clickstream and who is who in it.

    Args:
        events: records to return, duplicates included (>= 1).
        users: distinct users (1 <= users <= events); each has at least one event.
        seed: seeds the ``random.Random`` behind every choice (and the one behind each
            user's device, ``_make_users``).
        start_ms: epoch ms (UTC) the first sessions start from (within a week of it).
        duplicate_share: share of ``events`` that are retries of another event
            (same id and content), rounded down; 0 to 0.5.

    Returns:
        ``(records, personas)``: event dicts in emission order (roughly time
        order) and ``{user_id: persona}`` for every user, sorted by user id.

    Raises:
        ValueError: an argument is out of range; the message names it.

    >>> records, truth = generate(events=40, users=6, seed=1)
    >>> len(records), sorted(truth.values()) == sorted(PERSONAS)
    (40, True)
    >>> records == generate(events=40, users=6, seed=1)[0]
    True
    """
    _check_args(events, users, seed, start_ms, duplicate_share)
    rng = random.Random(seed)
    duplicates = min(math.floor(events * duplicate_share + 1e-9), events - users)
    unique = events - duplicates

    people = _make_users(rng, users, seed)
    quotas = _quotas(rng, people, unique)
    timed: list[tuple[int, int, dict]] = []  # (arrival ms, sequence, event)
    for user, quota in zip(people, quotas):
        for event in _user_events(rng, user, quota, start_ms):
            arrival = event["timestamp"] + rng.randint(0, MAX_DELAY_MS)
            timed.append((arrival, len(timed), event))
    timed.sort(key=lambda item: (item[0], item[1]))
    for n, (_, _, event) in enumerate(timed):
        event["event_id"] = f"gen-{seed}-{n}"

    retries = []
    for index in sorted(rng.sample(range(unique), duplicates)):
        arrival, _, event = timed[index]
        delay = rng.randint(1_000, MAX_RETRY_DELAY_MS)
        retries.append((arrival + delay, unique + index, _copy_event(event)))
    timed.extend(retries)
    timed.sort(key=lambda item: (item[0], item[1]))

    truth = {user.user_id: user.persona for user in sorted(people, key=lambda u: u.user_id)}
    return [event for _, _, event in timed], truth


def persona_counts(personas: dict[str, str]) -> dict[str, int]:
    """Users per persona, for every persona in ``PERSONAS`` order (zeros included).

    >>> persona_counts({"u1": "cart_abandoner", "u2": "cart_abandoner"})["cart_abandoner"]
    2
    """
    counts = dict.fromkeys(PERSONAS, 0)
    for persona in personas.values():
        counts[persona] = counts.get(persona, 0) + 1
    return counts


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_args(events, users, seed, start_ms, duplicate_share) -> None:
    """Raise ValueError naming the first argument that is out of range."""
    if not _is_int(events) or events < 1:
        raise ValueError(f"events must be an integer >= 1, got {events!r}")
    if not _is_int(users) or users < 1:
        raise ValueError(f"users must be an integer >= 1, got {users!r}")
    if users > events:
        raise ValueError(
            f"users must be <= events (each user needs an event), got users={users}, "
            f"events={events}"
        )
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not _is_int(start_ms) or not _MIN_START_MS <= start_ms < _MAX_START_MS:
        raise ValueError(
            "start_ms must be epoch milliseconds between 2000-01-01 and 2100-01-01, "
            f"got {start_ms!r}"
        )
    if (
        not isinstance(duplicate_share, int | float)
        or isinstance(duplicate_share, bool)
        or not 0 <= duplicate_share <= 0.5
    ):
        raise ValueError(f"duplicate_share must be a number from 0 to 0.5, got {duplicate_share!r}")


def _make_users(rng, count: int, seed: int = 0) -> list[_User]:
    """``count`` users, personas balanced round-robin then shuffled.

    A user's device is drawn by persona (``_PERSONA_DEVICES``) from a second
    ``random.Random`` of its own, and the user's country and time zone by
    ``_LOCALE_WEIGHTS`` from a third: the main generator's draws stay what they
    were before (only the users' local hours, and so their events' times, moved).
    """
    personas = [PERSONAS[i % len(PERSONAS)] for i in range(count)]
    rng.shuffle(personas)
    width = max(4, len(str(count - 1)))
    people = []
    devices = random.Random(f"devices:{seed}")
    places = random.Random(f"locales:{seed}")
    for i, persona in enumerate(personas):
        rng.choice(_LOCALES)  # the draw of the locale before it was weighted, kept
        country, timezone, offset = places.choices(_LOCALES, weights=_LOCALE_WEIGHTS)[0]
        # The draws of the device before it followed the persona, kept for the stream.
        _, kept, _ = rng.choices(_DEVICES, weights=[w for _, _, w in _DEVICES])[0]
        rng.choice(kept)
        device, systems, _ = devices.choices(_DEVICES, weights=_PERSONA_DEVICES[persona])[0]
        people.append(
            _User(
                user_id=f"u{i:0{width}d}",
                persona=persona,
                country=country,
                timezone=timezone,
                utc_offset_min=offset,
                device=device,
                os=devices.choice(systems),
                marketing=rng.random() < 0.6,
                category=rng.choice(CATEGORIES),
                brand=rng.choice(BRANDS),
            )
        )
    return people


def _quotas(rng, people: list[_User], total: int) -> list[int]:
    """Split ``total`` events among users: one each, the rest by persona weight."""
    weights = [SPECS[u.persona].weight * rng.uniform(0.6, 1.4) for u in people]
    extra = total - len(people)
    scale = extra / sum(weights)
    shares = [w * scale for w in weights]
    quotas = [1 + math.floor(s) for s in shares]
    left = total - sum(quotas)
    by_remainder = sorted(range(len(people)), key=lambda i: (-(shares[i] % 1), i))
    for i in by_remainder[:left]:
        quotas[i] += 1
    return quotas


def _session_lengths(rng, quota: int, low: int, high: int) -> list[int]:
    """Split a user's quota into session lengths within [low, high] where possible."""
    lengths = []
    left = quota
    while left > 0:
        if left <= high:
            size = left
        else:
            size = rng.randint(low, high)
            if left - size < low:
                size = left - low
        lengths.append(size)
        left -= size
    return lengths


def _awake(ts: int, user: _User, rng) -> int:
    """Move a session start forward into the user's local waking hours."""
    local_hour = ((ts + user.utc_offset_min * ev.MINUTE_MS) // ev.HOUR_MS) % 24
    if local_hour < _WAKE_HOUR:
        ts += (_WAKE_HOUR - local_hour) * ev.HOUR_MS + rng.randint(0, 3 * ev.HOUR_MS)
    return ts


def _user_events(rng, user: _User, quota: int, start_ms: int) -> list[dict]:
    """Exactly ``quota`` events of one user, session by session, in event time."""
    spec = SPECS[user.persona]
    script = _SCRIPTS[user.persona]
    out: list[dict] = []
    clock = start_ms + rng.randrange(FIRST_SESSION_SPREAD_MS)
    for number, size in enumerate(_session_lengths(rng, quota, *spec.session_events)):
        if number:
            clock += rng.randint(*spec.session_gap_ms)
        clock = _awake(clock, user, rng)
        device, os_name = user.device, user.os
        if rng.random() < 0.15:  # now and then another device
            device, systems, _ = rng.choice(_DEVICES)
            os_name = rng.choice(systems)
        campaign = None
        if spec.campaign and user.marketing and rng.random() < spec.campaign_share:
            campaign = spec.campaign
        session_id = f"s-{user.user_id}-{number}"
        for position, partial in enumerate(script(rng, user, size, number)):
            event = dict.fromkeys(EVENT_FIELDS)
            event.update(partial)
            event.update(
                user_id=user.user_id,
                timestamp=clock,
                session_id=session_id,
                device=device,
                os=os_name,
                country=user.country,
                region=_REGIONS[user.timezone],
                timezone=user.timezone,
                consent={"analytics": True, "personalization": True, "marketing": user.marketing},
                campaign=campaign if position == 0 else None,
            )
            out.append(event)
            # The next event follows the time spent here: far below the session gap.
            clock += (event["dwell_ms"] or rng.randint(1_000, 15_000)) + rng.randint(500, 5_000)
        clock = out[-1]["timestamp"]
    return out


def _copy_event(event: dict) -> dict:
    """A copy sharing no mutable map with the original."""
    copy = dict(event)
    for name in ("consent", "properties"):
        if copy[name] is not None:
            copy[name] = dict(copy[name])
    return copy


# Partial events: the fields an action sets. The session fills in the rest.


def _product_fields(product: Product) -> dict:
    return {
        "product_id": product.product_id,
        "category": product.category,
        "brand": product.brand,
        "price": product.price,
        "list_price": product.list_price,
    }


def _view(rng, product: Product, dwell_s: tuple[int, int], scroll: tuple[float, float]) -> dict:
    """A product view with its dwell time and scroll depth."""
    return {
        "event_type": ev.PRODUCT_VIEW,
        **_product_fields(product),
        "page": f"/p/{product.product_id}",
        "dwell_ms": rng.randint(dwell_s[0] * 1_000, dwell_s[1] * 1_000),
        "scroll_depth": round(rng.uniform(*scroll), 2),
    }


def _cart(rng, product: Product) -> dict:
    """Add one (now and then two) of a product to the cart."""
    return {
        "event_type": ev.ADD_TO_CART,
        **_product_fields(product),
        "quantity": 2 if rng.random() < 0.1 else 1,
        "page": f"/p/{product.product_id}",
    }


def _purchase(product: Product, quantity: int = 1) -> dict:
    """Buy a product."""
    return {
        "event_type": ev.PURCHASE,
        **_product_fields(product),
        "quantity": quantity,
        "page": "/checkout/complete",
    }


def _buy(rng, product: Product) -> list[dict]:
    """Add to cart, then purchase the same quantity."""
    cart = _cart(rng, product)
    return [cart, _purchase(product, cart["quantity"])]


def _search(query: str, results: int) -> dict:
    """A search and how many results the shop showed."""
    return {
        "event_type": ev.SEARCH,
        "query": query,
        "page": "/search",
        "properties": {"results": str(results)},
    }


def _page(rng, path: str, dwell_s: tuple[int, int], scroll: tuple[float, float]) -> dict:
    """A page view (home, category or cart page)."""
    return {
        "event_type": ev.PAGE_VIEW,
        "page": path,
        "dwell_ms": rng.randint(dwell_s[0] * 1_000, dwell_s[1] * 1_000),
        "scroll_depth": round(rng.uniform(*scroll), 2),
    }


def _cheap_discounted(rng) -> Product:
    """A discounted product, cheaper ones likelier."""
    return rng.choices(_DISCOUNTED, weights=[1 / p.price for p in _DISCOUNTED])[0]


# Scripts: (rng, user, n, session number) -> exactly n partial events.


def _bargain_hunter(rng, user: _User, n: int, number: int) -> list[dict]:
    """Searches for deals, views mostly cheap discounted items, sometimes buys one."""
    category = rng.choice(CATEGORIES)
    first = _search(rng.choice(_BARGAIN_QUERIES).format(c=category), rng.randint(12, 60))
    tail_size = 2 if n >= 5 and rng.random() < 0.35 else 0
    middle, viewed = [], []
    for _ in range(n - 1 - tail_size):
        roll = rng.random()
        if roll < 0.12:
            query = rng.choice(_BARGAIN_QUERIES).format(c=rng.choice(CATEGORIES))
            middle.append(_search(query, rng.randint(12, 60)))
        elif roll < 0.22:
            middle.append(_page(rng, "/deals", (5, 40), (0.4, 1.0)))
        else:
            product = _cheap_discounted(rng) if rng.random() < 0.9 else rng.choice(CATALOGUE)
            viewed.append(product)
            middle.append(_view(rng, product, (5, 45), (0.3, 0.9)))
    tail = []
    if tail_size:
        deals = [p for p in viewed if p.discounted]
        tail = _buy(rng, min(deals, key=lambda p: p.price) if deals else _cheap_discounted(rng))
    return ([first] + middle + tail)[:n]


def _high_intent_buyer(rng, user: _User, n: int, number: int) -> list[dict]:
    """Long, deep views of a few products in one category, then cart and purchase."""
    buys = number == 0 or rng.random() < 0.6
    shortlist = rng.sample(_BY_CATEGORY[user.category], rng.randint(2, 4))
    body = max(n - 2, 0) if buys else n
    out = [_view(rng, rng.choice(shortlist), (45, 240), (0.6, 1.0)) for _ in range(body)]
    if body >= 4:
        out[0] = _page(rng, f"/c/{user.category}", (10, 40), (0.5, 1.0))
    if buys:
        viewed = [v["product_id"] for v in out if v["event_type"] == ev.PRODUCT_VIEW]
        chosen = next((p for p in shortlist if p.product_id in viewed[-1:]), shortlist[0])
        out += _buy(rng, chosen)
    return out[-n:]


def _cart_abandoner(rng, user: _User, n: int, number: int) -> list[dict]:
    """Views, adds to cart, glances at the cart, leaves without buying."""
    if n == 1:
        return [_cart(rng, rng.choice(CATALOGUE))]
    category = rng.choice((user.category, rng.choice(CATEGORIES)))
    at = rng.randint(max(1, n // 2), n - 1)
    out, last = [], None
    for i in range(n):
        if i == at:
            out.append(_cart(rng, last or rng.choice(_BY_CATEGORY[category])))
        elif i == at + 1:
            out.append(_page(rng, "/cart", (5, 60), (0.2, 0.8)))
        else:
            last = rng.choice(_BY_CATEGORY[category] if rng.random() < 0.7 else CATALOGUE)
            out.append(_view(rng, last, (10, 90), (0.3, 0.9)))
    return out


def _window_shopper(rng, user: _User, n: int, number: int) -> list[dict]:
    """Many quick, shallow looks across categories; never a cart."""
    out = [_page(rng, "/", (2, 12), (0.05, 0.5))]
    while len(out) < n:
        roll = rng.random()
        if roll < 0.1:
            out.append(_page(rng, f"/c/{rng.choice(CATEGORIES)}", (2, 12), (0.05, 0.5)))
        elif roll < 0.22:
            out.append(
                {
                    "event_type": ev.SCROLL,
                    "page": out[-1]["page"],
                    "scroll_depth": round(rng.uniform(0.05, 0.45), 2),
                }
            )
        elif roll < 0.3:
            product = rng.choice(CATALOGUE)
            out.append(
                {"event_type": ev.CLICK, **_product_fields(product), "page": out[-1]["page"]}
            )
        else:
            out.append(_view(rng, rng.choice(CATALOGUE), (2, 15), (0.05, 0.4)))
    return out[:n]


def _returning_loyal(rng, user: _User, n: int, number: int) -> list[dict]:
    """Comes back every few days and buys from the favourite brand."""
    favourites = _BY_BRAND[user.brand]
    buys = number == 0 or rng.random() < 0.75
    body = max(n - 2, 0) if buys else n
    out = [_page(rng, "/", (3, 20), (0.1, 0.6))][:body]
    while len(out) < body:
        product = rng.choice(favourites) if rng.random() < 0.8 else rng.choice(CATALOGUE)
        out.append(_view(rng, product, (20, 120), (0.4, 1.0)))
    if buys:
        out += _buy(rng, rng.choice(favourites))
    return out[-n:]


def _searcher_frustrated(rng, user: _User, n: int, number: int) -> list[dict]:
    """Searches and rephrases, finds little, never opens a product."""
    out = []
    query = rng.choice(_NICHE_QUERIES)
    while len(out) < n:
        if out and rng.random() < 0.25:
            out.append(
                {
                    "event_type": ev.SCROLL,
                    "page": "/search",
                    "scroll_depth": round(rng.uniform(0.3, 1.0), 2),
                }
            )
            continue
        if out and rng.random() < 0.5:
            query = rng.choice(_NICHE_QUERIES)
        elif out:
            query = f"{query} {rng.choice(('cheap', 'new', 'best', 'near me', '2024'))}"[:120]
        out.append(_search(query, 0 if rng.random() < 0.8 else rng.randint(1, 2)))
    return out


_SCRIPTS = {
    BARGAIN_HUNTER: _bargain_hunter,
    HIGH_INTENT_BUYER: _high_intent_buyer,
    CART_ABANDONER: _cart_abandoner,
    WINDOW_SHOPPER: _window_shopper,
    RETURNING_LOYAL: _returning_loyal,
    SEARCHER_FRUSTRATED: _searcher_frustrated,
}
