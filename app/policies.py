"""One policy record per view, run in the house order (auth, limit, schema, cache, view) however it was written.

Each policy decorator (``require_auth``/``public``, ``limiter.limit``, ``declare_schema``,
``cache_response``) only adds its part to the view's record and returns one wrapper built from
the original view and the whole record, innermost layer first. Which decorator is written
outermost changes nothing. Records are found by the wrapper's identity, never by an attribute:
``functools.wraps`` copies attributes outward, which is how a misordered stack once passed the
start-up check (issue 21).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask

from app.config import ConfigError, problems_of

__all__ = ["ORDER", "Build", "Layer", "RoutePolicy", "add_policy", "check_order", "route_policy"]

View = TypeVar("View", bound=Callable[..., Any])
#: How a layer wraps what runs after it, given every setting of its kind on the view.
Build = Callable[[tuple[Any, ...], Callable[..., Any]], Callable[..., Any]]

#: The layers in the order a request meets them.
ORDER = ("auth", "limit", "schema", "cache")
# Limits add up (a route limit and a shared quota); a second auth, schema or cache policy is a mistake.
_REPEATABLE = frozenset({"limit"})


@dataclass(frozen=True)
class Layer:
    """Every setting of one kind of policy on a view, and how that kind wraps what runs after it."""

    settings: tuple[Any, ...]
    build: Build


@dataclass(frozen=True)
class RoutePolicy:
    """What a view's policy decorators declared, by layer (``ORDER``)."""

    layers: tuple[tuple[str, Layer], ...] = ()

    def settings(self, kind: str) -> tuple[Any, ...]:
        """Every setting of ``kind`` (``()`` when the view has none)."""
        return next((layer.settings for name, layer in self.layers if name == kind), ())


@dataclass(frozen=True)
class _Composed:
    view: Callable[..., Any]  # the function the policy decorators were written around
    policy: RoutePolicy


# Keyed by the wrapper object itself: a function that merely copied a wrapper's attributes is not in it.
_COMPOSED: weakref.WeakKeyDictionary[Callable[..., Any], _Composed] = weakref.WeakKeyDictionary()


def add_policy(view: View, kind: str, setting: object, build: Build) -> View:
    """Add ``setting`` to the ``kind`` layer of ``view``'s record; the wrapper that runs the record in ``ORDER``."""
    found = _composed(view)
    original, layers = (found.view, dict(found.policy.layers)) if found else (view, {})
    layer = layers.get(kind)
    if layer is not None and kind not in _REPEATABLE:
        raise ConfigError(f"{kind} policy of {_name(original)}", setting,
                          f"one {kind} decorator on the view (it already has {layer.settings[0]!r})")
    layers[kind] = Layer((*layer.settings, setting) if layer else (setting,), build)
    run = original
    for name in reversed(ORDER):  # innermost first, so a request meets them in ORDER
        if name in layers:
            run = layers[name].build(layers[name].settings, run)
    if run is not original:
        # Keep what other decorators noted on the wrapper they were given (the edge override),
        # but point __wrapped__ past our own layers, at the view they were written around.
        functools.update_wrapper(run, view)
        run.__wrapped__ = original  # type: ignore[attr-defined]
    _COMPOSED[run] = _Composed(original, RoutePolicy(tuple((name, layers[name]) for name in ORDER
                                                           if name in layers)))
    return cast(View, run)


def route_policy(view: Callable[..., Any]) -> RoutePolicy:
    """Every policy on a registered view, its records found through ``__wrapped__`` (outermost first)."""
    merged: dict[str, tuple[Any, ...]] = {}
    builds: dict[str, Build] = {}
    for policy in _records(view):
        for name, layer in policy.layers:
            merged[name] = (*merged.get(name, ()), *layer.settings)
            builds[name] = layer.build
    return RoutePolicy(tuple((name, Layer(merged[name], builds[name])) for name in ORDER if name in merged))


def check_order(app: Flask) -> None:
    """Refuse a route whose policies run out of ``ORDER``: policy decorators split by another decorator."""
    problems = problems_of(app)
    for rule in app.url_map.iter_rules():
        met: list[str] = []  # the layers a request meets, in the order it meets them
        for policy in _records(app.view_functions[rule.endpoint]):
            met += [name for name, _ in policy.layers]
        for earlier, later in zip(met, met[1:]):
            if ORDER.index(later) < ORDER.index(earlier) or (later == earlier and later not in _REPEATABLE):
                problems.report(ConfigError(
                    f"policy order of {rule.rule}", rule.endpoint,
                    f"its {later} policy to run before its {earlier} policy ({', '.join(ORDER)}, then the view): "
                    f"another decorator splits its policy decorators; write them together under the route"),
                    after=None)
                break


def _records(view: Callable[..., Any]) -> Iterator[RoutePolicy]:
    """The records on ``view``'s chain of wrappers, outermost first."""
    current: Callable[..., Any] | None = view
    built_from = None  # the view the last record was built around: it already holds that view's own record
    for _ in range(100):  # a chain that long (or a loop) is not a view anybody wrote
        if current is None:
            return
        found = _composed(current)
        if found is not None and not (found.view is current and current is built_from):
            yield found.policy
            built_from = found.view
        # A record whose policies add no layer (only @public) is kept on the view itself.
        current = found.view if found is not None and found.view is not current else getattr(
            current, "__wrapped__", None)


def _composed(view: Callable[..., Any]) -> _Composed | None:
    try:
        return _COMPOSED.get(view)
    except TypeError:  # not weakly referenceable (a callable object without __weakref__): none of ours
        return None


def _name(view: Callable[..., Any]) -> str:
    return f"{getattr(view, '__module__', '?')}.{getattr(view, '__qualname__', repr(view))}"
