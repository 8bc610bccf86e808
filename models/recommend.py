"""Recommenders learned online from sessions: item-to-item and session neighbours.

Written here because no well-kept library learns these one click at a time
with bounded memory (river has no session recommender; the literature's
reference code, session-rec, fits offline on a whole data frame). Each model
follows river's shape: ``learn(session, item, at)`` takes one click in
event-time order, ``recommend(items, k)`` ranks items for a session's clicks
so far (oldest first). A recommendation is ``(item, score, reason)``, where
``reason`` is ``(kind, item)``: ``("viewed", X)`` (because you viewed X),
``("popular", None)``, ``("session", X)`` (you viewed X in this session).

* ``Popular`` (POP): global click counts.
* ``SessionPopular`` (S-POP): the session's own items by count, then ``Popular``.
* ``ItemKNN``: cosine on session co-occurrence, ``co(i, j) / (sqrt(n_i n_j) +
  smoothing)`` where ``n_i`` counts the sessions with ``i`` and ``co`` the
  sessions with both, ranked from the session's last item, then ``Popular``
  fills the list. Each item keeps at most ``neighbours`` co-occurrence counts:
  when it holds twice that many, the rarest pairs are pruned down to
  ``neighbours`` (ties by item id). ``half_life_ms`` decays every count by
  its age, lazily at each read and write.
* ``SessionKNN`` (V-SKNN; SKNN with ``recent_weighted=False``): the
  ``neighbours`` most similar of the ``sample`` most recent past sessions
  that share an item with this one; a session's items weigh linearly more
  the later they were clicked; an item scores the sum of the similarities of
  the neighbours that hold it, then ``Popular`` fills. It keeps the last
  ``max_sessions`` sessions (each at most ``max_items`` distinct items) and,
  per item, the ``sample`` most recent sessions with it.

``SessionRecommender`` serves each user's list from one of these, cuts the
user's sessions, leaves bought items out and keeps the progressive HR and
MRR of what it served; it is the pipeline's ``recommendations`` model
(``models.learning.OnlineRecommender``). ``bench/recommenders.py`` measures
the algorithms on the literature's session benchmark.

State is plain data (dicts, lists, numbers), so a model pickles and two
models compare equal exactly when they learned the same clicks in the same
order (``__eq__`` compares state). Ties in a ranking break by item id, so a
ranking is a function of the state, not of dict order.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections.abc import Hashable, Sequence
from itertools import repeat
from operator import itemgetter

Item = Hashable
Recommendation = tuple  # (item, score, (reason kind, item or None))

POPULAR = "popular"
VIEWED = "viewed"
SESSION = "session"
TEST = "test"  # the period whose clicks are always scored (a data set's test part)


def _top(scores: dict, k: int) -> list[tuple]:
    """The ``k`` best ``(item, score)`` by score, ties by item (as text, ids may mix types)."""
    return heapq.nsmallest(k, scores.items(), key=lambda kv: (-kv[1], str(kv[0])))


class _Model:
    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # state is mutable

    def size(self) -> dict[str, int]:
        """How much the model holds (entries by kind), for memory reports."""
        raise NotImplementedError


def _rank_key(item, count) -> tuple:
    return -count, str(item)


class Popular(_Model):
    """POP: items by their click count (ties by item).

    The best ``depth`` items are kept ranked as clicks come (a click raises
    one count by one, so only that item can enter the ranking, in place of its
    last); a longer list is ranked from all counts.
    """

    def __init__(self, depth: int = 100):
        self.counts: dict = {}
        self.depth = depth
        self._best: list | None = None

    def learn(self, session: Hashable, item: Item, at: int = 0) -> None:
        count = self.counts.get(item, 0) + 1
        self.counts[item] = count
        best = self._best
        if best is None:
            return
        key = _rank_key(item, count)
        for i, (_, _, other) in enumerate(best):
            if other == item:
                best[i] = (*key, item)
                best.sort(key=lambda entry: entry[:2])
                return
        if len(best) < self.depth:
            best.append((*key, item))
            best.sort(key=lambda entry: entry[:2])
        elif key < best[-1][:2]:
            best[-1] = (*key, item)
            best.sort(key=lambda entry: entry[:2])

    def recommend(self, items: Sequence[Item] = (), k: int = 20) -> list[Recommendation]:
        if k > self.depth:
            ranked = _top(self.counts, k)
        else:
            if self._best is None:
                self._best = [(*_rank_key(i, n), i) for i, n in _top(self.counts, self.depth)]
            ranked = [(item, -negative) for negative, _, item in self._best[:k]]
        return [(item, float(n), (POPULAR, None)) for item, n in ranked]

    def fill(self, ranked: list[Recommendation], k: int) -> list[Recommendation]:
        """``ranked`` topped up with popular items not in it, to ``k``."""
        if len(ranked) >= k:
            return ranked[:k]
        have = {r[0] for r in ranked}
        extra = [r for r in self.recommend((), k + len(have)) if r[0] not in have]
        return ranked + [(item, 0.0, reason) for item, _score, reason in extra[: k - len(ranked)]]

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.counts == other.counts

    def __getstate__(self):
        return {"counts": self.counts, "depth": self.depth}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._best = None

    def size(self) -> dict[str, int]:
        return {"items": len(self.counts)}


def session_items(items: Sequence[Item], k: int) -> list[Recommendation]:
    """The session's own items by clicks (then the later clicked), at most ``k``."""
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    last = {item: i for i, item in enumerate(items)}
    ranked = sorted(counts, key=lambda item: (-counts[item], -last[item]))[:k]
    return [(item, float(counts[item]), (SESSION, item)) for item in ranked]


def session_popular(items: Sequence[Item], popular: Popular, k: int) -> list[Recommendation]:
    """S-POP's list: the session's items by clicks (then the later clicked), then ``popular``."""
    return popular.fill(session_items(items, k), k)


class SessionPopular(_Model):
    """S-POP: the session's items by how often it clicked them, then popular ones."""

    def __init__(self):
        self.popular = Popular()

    def learn(self, session: Hashable, item: Item, at: int = 0) -> None:
        self.popular.learn(session, item, at)

    def recommend(self, items: Sequence[Item], k: int = 20) -> list[Recommendation]:
        return session_popular(items, self.popular, k)

    def size(self) -> dict[str, int]:
        return self.popular.size()


class ItemKNN(_Model):
    """Item-to-item: smoothed cosine on session co-occurrence, from the last item."""

    def __init__(
        self,
        smoothing: float = 20.0,
        neighbours: int = 200,
        half_life_ms: int | None = None,
        max_sessions: int = 10_000,
    ):
        if smoothing < 0 or min(neighbours, max_sessions) < 1:
            raise ValueError("smoothing >= 0, neighbours and max_sessions >= 1")
        if half_life_ms is not None and half_life_ms <= 0:
            raise ValueError("half_life_ms > 0 or None")
        self.smoothing = smoothing
        self.neighbours = neighbours
        self.half_life_ms = half_life_ms
        self.max_sessions = max_sessions
        # The open sessions' distinct items in click order, the least recently clicked first.
        self.sessions: dict = {}
        self.support: dict = {}  # item -> sessions with it (or its decayed weight, time)
        self.co: dict = {}  # item -> {other item: sessions with both}
        self.popular = Popular()
        self.pruned = 0

    # -- counts, decayed lazily when half_life_ms is set ----------------------
    def _decayed(self, value, at: int) -> float:
        if self.half_life_ms is None:
            return value
        weight, since = value
        return weight * 0.5 ** ((at - since) / self.half_life_ms)

    def _bump(self, table: dict, key, at: int) -> None:
        if self.half_life_ms is None:
            table[key] = table.get(key, 0) + 1
        else:
            old = table.get(key)
            table[key] = (1.0 + (self._decayed(old, at) if old is not None else 0.0), at)

    def learn(self, session: Hashable, item: Item, at: int = 0) -> None:
        self.popular.learn(session, item, at)
        seen = self.sessions.pop(session, None)
        if seen is None:
            seen = []
            if len(self.sessions) >= self.max_sessions:
                del self.sessions[next(iter(self.sessions))]
        self.sessions[session] = seen
        if item in seen:
            return
        self._bump(self.support, item, at)
        row = self.co.setdefault(item, {})
        for other in seen:
            self._bump(row, other, at)
            back = self.co.setdefault(other, {})
            self._bump(back, item, at)
            if len(back) >= 2 * self.neighbours:
                self._prune(back, at)
        if len(row) >= 2 * self.neighbours:
            self._prune(row, at)
        seen.append(item)

    def end_session(self, session: Hashable) -> None:
        """Forget a finished session's item list (its counts stay)."""
        self.sessions.pop(session, None)

    forget_session = end_session  # the counts are aggregates: no one's clicks in them

    def _prune(self, row: dict, at: int) -> None:
        kept = heapq.nsmallest(
            self.neighbours,
            row.items(),
            key=lambda kv: (-self._decayed(kv[1], at), str(kv[0])),
        )
        self.pruned += len(row) - len(kept)
        row.clear()
        row.update(kept)

    def similar(self, item: Item, k: int = 20, at: int = 0) -> list[tuple]:
        """``(other, similarity)`` of the ``k`` items most similar to ``item``."""
        row = self.co.get(item)
        if not row:
            return []
        n_item = self._decayed(self.support[item], at)
        scores = {
            other: self._decayed(count, at)
            / (math.sqrt(n_item * self._decayed(self.support[other], at)) + self.smoothing)
            for other, count in row.items()
        }
        return _top(scores, k)

    def recommend(self, items: Sequence[Item], k: int = 20, at: int = 0) -> list[Recommendation]:
        if not items:
            return self.popular.recommend((), k)
        last = items[-1]
        ranked = [(other, score, (VIEWED, last)) for other, score in self.similar(last, k, at)]
        return self.popular.fill(ranked, k)

    def size(self) -> dict[str, int]:
        return {
            "items": len(self.support),
            "pairs": sum(len(row) for row in self.co.values()),
            "open_sessions": len(self.sessions),
        }


class SessionKNN(_Model):
    """V-SKNN: items of the past sessions most similar to this one, recent clicks weighed more."""

    def __init__(
        self,
        neighbours: int = 100,
        sample: int = 250,
        max_sessions: int = 100_000,
        max_items: int = 50,
        recent_weighted: bool = True,
    ):
        if min(neighbours, sample, max_sessions, max_items) < 1:
            raise ValueError("neighbours, sample, max_sessions and max_items must be at least 1")
        self.recent_weighted = recent_weighted
        self.neighbours_k = neighbours
        self.sample = sample
        self.max_sessions = max_sessions
        self.max_items = max_items
        self.sessions: dict = {}  # session -> [recency, its distinct items], oldest first
        self.index: dict = {}  # item -> {session: its recency}, the most recent sessions with it
        self.tags: dict = {}  # session -> the groups (segments) its user was in at its last click
        self.clock = 0
        self.popular = Popular()

    def learn(self, session: Hashable, item: Item, at: int = 0, tags: tuple = ()) -> None:
        """Learn a click; ``tags``: the groups the session counts in as a neighbour."""
        self.popular.learn(session, item, at)
        if tags:
            self.tags[session] = tags
        elif self.tags:
            self.tags.pop(session, None)
        self.clock += 1
        entry = self.sessions.pop(session, None)
        if entry is None:
            entry = [0, []]
            if len(self.sessions) >= self.max_sessions:
                self._evict_oldest()
        entry[0] = self.clock
        self.sessions[session] = entry  # now the most recent
        items = entry[1]
        if item not in items and len(items) < self.max_items:
            items.append(item)
        clock = self.clock
        for each in items:
            recent = self.index.get(each)
            if recent is None:
                recent = self.index[each] = {}
            else:
                recent.pop(session, None)
            recent[session] = clock
            if len(recent) > self.sample:
                del recent[next(iter(recent))]

    def _evict_oldest(self) -> None:
        self.forget_session(next(iter(self.sessions)))

    def forget_session(self, old: Hashable) -> None:
        """Drop a session: it is no one's neighbour any more."""
        entry = self.sessions.pop(old, None)
        if entry is None:
            return
        self.tags.pop(old, None)
        for item in entry[1]:
            recent = self.index.get(item)
            if recent is not None:
                recent.pop(old, None)
                if not recent:
                    del self.index[item]

    def _weights(self, items: Sequence[Item]) -> dict:
        """This session's items, each weighed by how late it was last clicked (1/n .. 1)."""
        n = len(items)
        if not self.recent_weighted:
            return dict.fromkeys(items, 1.0)
        return {item: (position + 1) / n for position, item in enumerate(items)}

    def neighbours(
        self, items: Sequence[Item], exclude: Hashable = None, tag: Hashable = None
    ) -> list[tuple]:
        """``(session, similarity)`` of the ``k`` nearest past sessions (with ``tag``, if given)."""
        return [
            (session, similarity) for session, similarity, _ in self._nearest(items, exclude, tag)
        ]

    def _nearest(self, items: Sequence[Item], exclude: Hashable, tag: Hashable) -> list[tuple]:
        """``neighbours`` with each neighbour's items: ``(session, similarity, items)``.

        The candidates are the ``sample`` most recent sessions sharing an item;
        each index row holds its sessions' recency, so gathering them is a dict
        merge; the nearest are the most similar, the more recent first.
        """
        weights = self._weights(items)
        candidates: dict = {}
        index = self.index
        for item in weights:
            recent = index.get(item)
            if recent:
                candidates.update(recent)
        if tag is not None:
            tags = self.tags
            candidates = {s: r for s, r in candidates.items() if tag in tags.get(s, ())}
        candidates.pop(exclude, None)
        if len(candidates) > self.sample:
            candidates = dict(heapq.nlargest(self.sample, candidates.items(), key=itemgetter(1)))
        norm = math.sqrt(len(weights))
        sessions = self.sessions
        get = weights.get
        scored = []
        for session, recency in candidates.items():
            others = sessions[session][1]
            dot = sum(map(get, others, repeat(0.0, len(others))))
            if dot > 0:
                scored.append((-dot / (norm * math.sqrt(len(others))), -recency, session, others))
        # Recency is unique to a session: the ties end there.
        best = heapq.nsmallest(self.neighbours_k, scored)
        return [(session, -similarity, others) for similarity, _, session, others in best]

    def recommend(
        self, items: Sequence[Item], k: int = 20, exclude: Hashable = None, tag: Hashable = None
    ) -> list[Recommendation]:
        """Ranked items for a session's clicks so far; ``exclude``: the session itself.

        ``tag``: only sessions with that tag are neighbours, and nothing fills the list.
        """
        if not items:
            return [] if tag is not None else self.popular.recommend((), k)
        scores: dict = {}
        because: dict = {}
        weights = self._weights(items)
        for _session, similarity, others in self._nearest(items, exclude, tag):
            # The reason: the latest item of this session that the neighbour shares.
            shared = None
            for item in others:
                scores[item] = scores.get(item, 0.0) + similarity
                if item not in because:
                    if shared is None:
                        shared = max((weights[i], str(i), i) for i in others if i in weights)[2]
                    because[item] = shared
        ranked = [(item, score, (VIEWED, because[item])) for item, score in _top(scores, k)]
        return ranked if tag is not None else self.popular.fill(ranked, k)

    def similar(self, item: Item, k: int = 20) -> list[tuple]:
        """``(other, score)``: what the sessions nearest to one of ``item`` alone also clicked."""
        scores: dict = {}
        for _session, similarity, others in self._nearest((item,), None, None):
            for other in others:
                if other != item:
                    scores[other] = scores.get(other, 0.0) + similarity
        return _top(scores, k)

    def size(self) -> dict[str, int]:
        return {
            "sessions": len(self.sessions),
            "tagged_sessions": len(self.tags),
            "session_items": sum(len(entry[1]) for entry in self.sessions.values()),
            "index_entries": sum(len(recent) for recent in self.index.values()),
        }


# ---------------------------------------------------------------- served per user


def _mix(ranked: list, local: list, w: float, n: int, tag=None) -> list[Recommendation]:
    """The best ``n`` of ``(1 - w) * ranked + w * local``, each scaled by its best score.

    An item keeps the reason (and segment) of the larger part, and ``tag``
    (when given) when that is the local part. Ties keep the order of
    ``ranked``, then of ``local``.
    """
    parts: dict = {}  # item -> [ranked part, local part, place, ranked tail, local tail]
    for side, weight, entries in ((0, 1 - w, ranked), (1, w, local)):
        best = max((entry[1] for entry in entries), default=0.0)
        for position, (item, score, *tail) in enumerate(entries):
            entry = parts.get(item)
            if entry is None:
                entry = parts[item] = [0.0, 0.0, side * len(ranked) + position, tail, tail]
            entry[side] = weight * score / best if best > 0 else 0.0
            entry[3 + side] = tail
    order = sorted(parts.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[1][2]))
    out = []
    for item, (own, theirs, _place, tail, their_tail) in order[:n]:
        if theirs > own:
            out.append(
                (item, own + theirs, *their_tail[:1], *(their_tail[1:] if tag is None else (tag,)))
            )
        else:
            out.append((item, own + theirs, *tail))
    return out


def _rank(ranked: list[Recommendation], item: Item) -> int | None:
    for rank, entry in enumerate(ranked, 1):
        if entry[0] == item:
            return rank
    return None


class _HitRate:
    """HR@K and MRR@K (in %) of the lists served before each next click."""

    __slots__ = ("n", "hits", "reciprocal")

    def __init__(self):
        self.n = 0
        self.hits = 0
        self.reciprocal = 0.0

    def update(self, rank: int | None) -> None:
        self.n += 1
        if rank is not None:
            self.hits += 1
            self.reciprocal += 1.0 / rank

    def report(self, k: int) -> dict:
        if not self.n:
            return {f"hr_at_{k}": None, f"mrr_at_{k}": None, "predictions": 0}
        return {
            f"hr_at_{k}": round(100 * self.hits / self.n, 4),
            f"mrr_at_{k}": round(100 * self.reciprocal / self.n, 4),
            "predictions": self.n,
        }

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __getstate__(self):
        return (self.n, self.hits, self.reciprocal)

    def __setstate__(self, state):
        self.n, self.hits, self.reciprocal = state


ALGORITHMS = {
    "session_knn": SessionKNN,
    "item_knn": ItemKNN,
    "session_popular": SessionPopular,
    "popular": Popular,
}


class SessionRecommender(_Model):
    """Each user's list, served from one of ``ALGORITHMS`` as the user's clicks come.

    ``learn(x, at)`` takes a click, ``x = {"user", "item"}`` (and ``"bought"``:
    a purchase, ``"period"``: a label the metrics are also kept by, such as a
    data set's test period). The user's session is cut here by ``gap_ms``, the
    pipeline's session gap: a click ``gap_ms`` or more after the user's last
    starts a new one, keyed ``(user, start)`` in the algorithm. Before the
    click is learned, the list the user would have been served (the session's
    clicks so far) is looked up for it: progressive HR@K and MRR@K, overall
    and per period, next to POP and S-POP measured the same way (unless
    ``score`` is false: a copy that learns another's clicks). Ranking costs
    about a millisecond with session neighbours, so every click of the
    ``test`` period is scored but of the others only those of a stable share
    of users (``evaluate_share``, by a hash of the user). ``serve(x)``
    gives the list for ``{"user"}`` as served now, purchased items left out
    unless ``recommend_purchased``; ``forget(x)`` drops what the model holds
    of ``{"user"}`` (its sessions and purchases).

    Reminders: with ``reminders`` above 0 a list is ``(1 - r) * the
    algorithm's + r * the session's own items`` (``session_items``), each
    scaled by its best score (``_mix``). ``similar(item, at)`` gives an item's
    similar items (``session_knn`` and ``item_knn``; ``similar_items=False``:
    none).

    Within segments: with ``segment_weight`` above 0, clicks also carry the
    user's rule segments (``x["segments"]``) and ``segments`` gives each
    segment's ``(name, parent, min_size)``, parents first. A user's list is
    then a blend of the global one and one learned among the members of the
    user's most specific segment: ``(1 - w) * global + w * segment``, each
    scaled by its best score. With ``session_knn`` the segment's list is made
    from neighbour sessions of the segment's members only (similarity only
    among members); with the other algorithms, from the items the members
    clicked most. A segment that has seen fewer than ``min_size`` members
    click gives way to its parent, and one without a parent to the global list
    alone. Items the segment's part brings carry the segment's name.

    Memory: the open sessions of at most ``max_users`` users (the least
    recently active go first), each its last ``max_items`` clicks, and per
    user the last ``max_items`` purchases; plus the algorithm's own bounds,
    and per segment a click count per item it has seen.
    """

    def __init__(
        self,
        algorithm: str = "session_knn",
        k: int = 20,
        gap_ms: int = 30 * 60_000,
        recommend_purchased: bool = False,
        max_users: int = 100_000,
        max_items: int = 50,
        evaluate_share: float = 0.1,
        segment_weight: float = 0.0,
        segments: Sequence[tuple] = (),
        similar_items: bool = True,
        reminders: float = 0.0,
        **params,
    ):
        if not 0 <= evaluate_share <= 1:
            raise ValueError("evaluate_share must be in [0, 1]")
        if not 0 <= segment_weight <= 1:
            raise ValueError("segment_weight must be in [0, 1]")
        if not 0 <= reminders <= 1:
            raise ValueError("reminders must be in [0, 1]")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        if min(k, gap_ms, max_users, max_items) < 1:
            raise ValueError("k, gap_ms, max_users and max_items must be at least 1")
        self.algorithm = algorithm
        self.model = ALGORITHMS[algorithm](**params)
        self.k = k
        self.gap_ms = gap_ms
        self.recommend_purchased = recommend_purchased
        self.max_users = max_users
        self.max_items = max_items
        self.evaluate_share = evaluate_share
        self.open: dict = {}  # user -> [session start, last click at, clicks]
        self.bought: dict = {}  # user -> purchased items, the latest last
        self.metrics = _HitRate()
        self.by_period: dict = {}
        self.baselines = {"pop": _HitRate(), "spop": _HitRate()}
        self.baselines_by_period: dict = {}
        self.popular = Popular()
        self.clicks = 0
        self.segment_weight = segment_weight
        self.similar_items = similar_items
        self.reminders = reminders
        # segment -> (its place, parents first; its parent; its min_size)
        self.segments = {
            name: (place, parent, min_size)
            for place, (name, parent, min_size) in enumerate(segments)
        }
        self.segment_popular: dict = {}  # segment -> Popular of its members' clicks
        self.segment_members: dict = {}  # segment -> members seen, until min_size of them
        self.segments_grown: set = set()  # segments that have seen min_size members
        self.within = _HitRate()  # the clicks whose list was served within a segment

    # -- the algorithms' calls ------------------------------------------------
    def _ranked(self, session, items: list, k: int) -> list[Recommendation]:
        if isinstance(self.model, SessionKNN):
            return self.model.recommend(items, k, exclude=session)
        return self.model.recommend(items, k)

    def _served(self, user, session, items: list, segment=None) -> list[Recommendation]:
        bought = () if self.recommend_purchased else self.bought.get(user, ())
        n = self.k + len(bought)
        ranked = self._ranked(session, items, n)
        if segment is not None:
            ranked = self._blend(ranked, self._local(segment, session, items, n), segment, n)
        reminders = getattr(self, "reminders", 0.0)  # a model pickled before it has none
        if reminders and items:
            own = session_items(items, n)
            ranked = self.popular.fill(_mix(ranked, own, reminders, n), n)
        if bought:
            ranked = [entry for entry in ranked if entry[0] not in bought]
        return ranked[: self.k]

    # -- within segments ------------------------------------------------------
    def _segment(self, groups: tuple):
        """The segment a list is learned in: the user's most specific that has grown."""
        known = [name for name in groups if name in self.segments]
        if not known:
            return None
        name = max(known, key=lambda g: self.segments[g][0])
        while name is not None and not (name in self.segments_grown or self.segments[name][2] <= 0):
            name = self.segments[name][1]
        return name

    def _local(self, segment, session, items: list, n: int) -> list[Recommendation]:
        """The list learned among the segment's members (unfilled)."""
        if isinstance(self.model, SessionKNN):
            return self.model.recommend(items, n, exclude=session, tag=segment)
        popular = self.segment_popular.get(segment)
        return popular.recommend((), n) if popular is not None else []

    def _blend(self, ranked: list, local: list, segment, n: int) -> list[Recommendation]:
        """``(1 - w) * global + w * local`` (``_mix``), the segment's name on its items, filled."""
        out = _mix(ranked, local, self.segment_weight, n, segment)
        if len(out) < n and segment in self.segment_popular:
            out = self.segment_popular[segment].fill(out, n)
        return self.popular.fill(out, n)

    def _join(self, user, groups: tuple, item, at: int) -> None:
        """Count a click among the segments of its user."""
        for name in groups:
            if name not in self.segments:
                continue
            popular = self.segment_popular.get(name)
            if popular is None:
                popular = self.segment_popular[name] = Popular()
            popular.learn(None, item, at)
            if name not in self.segments_grown:
                members = self.segment_members.setdefault(name, set())
                members.add(user)
                if len(members) >= self.segments[name][2]:
                    self.segments_grown.add(name)
                    del self.segment_members[name]

    def _touch(self, table: dict, user, fresh):
        entry = table.pop(user, None)
        if entry is None:
            entry = fresh()
            if len(table) >= self.max_users:
                del table[next(iter(table))]
        table[user] = entry
        return entry

    # -- the model's interface ------------------------------------------------
    def learn(self, x: dict, at: int, score: bool = True) -> None:
        user, item = x["user"], x["item"]
        entry = self.open.get(user)
        period = x.get("period")
        if (
            score
            and entry is not None
            and at - entry[1] < self.gap_ms
            and entry[2]
            and (period == TEST or self._evaluated(user))
        ):
            session, items, segment = (user, entry[0]), entry[2], self._segment(entry[3])
            served = self._served(user, session, items, segment)
            rank = _rank(served, item)
            self._score(period, rank, items, item)
            if segment is not None:
                self.within.update(rank)
        entry = self._touch(self.open, user, lambda: [at, at, [], ()])
        if at - entry[1] >= self.gap_ms:
            if isinstance(self.model, ItemKNN):
                self.model.end_session((user, entry[0]))
            entry[0], entry[2] = at, []
        entry[1] = at
        entry[2].append(item)
        del entry[2][: -self.max_items]
        groups = ()
        if self.segment_weight and self.segments:
            groups = tuple(x.get("segments") or ())
            self._join(user, groups, item, at)
        entry[3] = groups
        if groups and isinstance(self.model, SessionKNN):
            self.model.learn((user, entry[0]), item, at, tags=groups)
        else:
            self.model.learn((user, entry[0]), item, at)
        self.popular.learn(None, item, at)
        self.clicks += 1
        if x.get("bought"):
            bought = self._touch(self.bought, user, list)
            if item in bought:
                bought.remove(item)
            bought.append(item)
            del bought[: -self.max_items]

    def _evaluated(self, user) -> bool:
        """Whether a user's clicks outside a marked period are scored (a stable share)."""
        share = self.evaluate_share
        if share >= 1:
            return True
        return zlib.crc32(f"evaluate:{user}".encode()) % 10_000 < share * 10_000

    def _score(self, period, rank, items, item) -> None:
        pop = _rank(self.popular.recommend((), self.k), item)
        spop = _rank(session_popular(items, self.popular, self.k), item)
        tables = [(self.metrics, self.baselines)]
        if period is not None:
            tables.append(
                (
                    self.by_period.setdefault(period, _HitRate()),
                    self.baselines_by_period.setdefault(
                        period, {"pop": _HitRate(), "spop": _HitRate()}
                    ),
                )
            )
        for metrics, baselines in tables:
            metrics.update(rank)
            baselines["pop"].update(pop)
            baselines["spop"].update(spop)

    def similar(self, item: Item, at: int) -> list[dict] | None:
        """The items most like ``item`` (``[{"item", "score"}]``), for "similar items".

        ``session_knn``: the items clicked in the sessions nearest to a session
        of ``item`` alone (the sessions with it, shorter and more recent
        first); ``item_knn``: its most similar items. Nothing fills the list.
        The popularity lists know no item relations, and ``similar_items=False``
        asks for none: ``None``.
        """
        wanted = getattr(self, "similar_items", True)  # a model pickled before it has none
        if not wanted or not isinstance(self.model, (SessionKNN, ItemKNN)):
            return None
        if isinstance(self.model, SessionKNN):
            found = self.model.similar(item, self.k)
        else:
            found = self.model.similar(item, self.k, at)
        return [{"item": other, "score": round(score, 6)} for other, score in found]

    def serve(self, x: dict, at: int) -> list[dict]:
        """The user's list now: ``[{"item", "score", "reason", "because"}]`` (JSON-ready)."""
        user = x["user"]
        entry = self.open.get(user)
        if entry is not None and at - entry[1] < self.gap_ms:
            session, items, segment = (user, entry[0]), entry[2], self._segment(entry[3])
        else:
            session, items, segment = None, [], None
        out = []
        for item, score, (reason, because), *segment_used in self._served(
            user, session, items, segment
        ):
            found = {"item": item, "score": round(score, 6), "reason": reason, "because": because}
            if segment_used:
                found["segment"] = segment_used[0]
            out.append(found)
        return out

    def forget(self, x: dict) -> None:
        user = x["user"]
        self.open.pop(user, None)
        self.bought.pop(user, None)
        for members in self.segment_members.values():
            members.discard(user)
        model = self.model
        if isinstance(model, SessionKNN | ItemKNN):
            for session in [s for s in model.sessions if s[0] == user]:
                model.forget_session(session)

    def summary(self) -> dict:
        out = {
            "algorithm": self.algorithm,
            "k": self.k,
            "segment_weight": self.segment_weight,
            "clicks": self.clicks,
            "metrics": self.metrics.report(self.k),
            "baselines": {name: m.report(self.k) for name, m in self.baselines.items()},
            "size": {
                **self.model.size(),
                "users": len(self.open),
                "buyers": len(self.bought),
                "segments": len(self.segment_popular),
            },
            "popular": [item for item, _score, _reason in self.popular.recommend((), self.k)],
        }
        if self.segment_weight:
            out["within_segments"] = self.within.report(self.k)
        if self.by_period:
            out["by_period"] = {
                period: {
                    "metrics": metrics.report(self.k),
                    "baselines": {
                        name: m.report(self.k)
                        for name, m in self.baselines_by_period[period].items()
                    },
                }
                for period, metrics in sorted(self.by_period.items())
            }
        return out

    def size(self) -> dict[str, int]:
        return self.summary()["size"]
