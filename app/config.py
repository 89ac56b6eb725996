"""Configuration: the settings class, then the TOML file, then environment overrides, then code.

Every component reads its own section once, at start-up, through :class:`Section` into a frozen
dataclass. A bad value raises :class:`ConfigError`, whose message is the one line an operator sees.
Readers that can go on past a bad entry (the next upstream, the next route) hand it to
:class:`Problems` instead: raised at once when the gateway starts, collected when it is only checked.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from settings import DEFAULT_ENV, ENVIRONMENTS, Base

if TYPE_CHECKING:
    from flask.sansio.app import App

__all__ = ["PROBLEMS", "ConfigError", "Problems", "Section", "load_config", "problems_of", "section_defaults"]

#: Where ``create_app`` keeps its :class:`Problems` in ``app.extensions``, for the checks made as
#: blueprints register (a code blueprint's upstream, every route's auth policy).
PROBLEMS = "frontdesk.problems"
T = TypeVar("T")

# Variables with a double underscore override one key: GATEWAY_UPSTREAMS__USERS__TIMEOUT=2.
_OVERRIDE_PREFIX = "GATEWAY_"
_OVERRIDE_SEPARATOR = "__"
# The configuration's sections: the upper-case settings attributes, less Flask's own TESTING
# switch, which only the settings classes set.
_SECTIONS = frozenset(key for key in dir(Base) if key.isupper() and key != "TESTING")


class ConfigError(Exception):
    """A setting that stops the start: names the key, the value and what was expected."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"{key} = {value!r}: expected {expected}")
        self.key = key


class Problems:
    """Where readers report bad settings: raised at once when starting, collected when checking.

    A reader that can go on past a bad entry reports it and goes on; one that cannot raises, and
    :meth:`read` gives that section up at its first problem. A problem about a key at, above or
    under one already reported is a consequence of it (``upstreams.users`` missing after
    ``upstreams.users.timeout`` was refused) and is not listed again; so is one found ``after``
    a section that was put back to its defaults.
    """

    def __init__(self, *, collect: bool = False) -> None:
        self.collect = collect
        self.errors: list[ConfigError] = []
        self.reset: set[str] = set()  # sections found bad and read again from their defaults

    def report(self, error: ConfigError, *, after: str | None = None) -> None:
        """Raise ``error`` (starting), or note it so the reader can go on (checking).

        ``after`` names the section the finding depends on (``AUTH`` for a scheme a route needs).
        """
        if not self.collect:
            raise error
        if after in self.reset:
            return
        if not any(_related(error.key, seen.key) for seen in self.errors):
            self.errors.append(error)

    def read(self, config: MutableMapping[str, Any], env: str, sections: tuple[str, ...],
             read: Callable[[], T]) -> T:
        """``read()``; when checking and it fails, report it, restore the section it names to the
        environment's defaults (each of ``sections`` when it names none) and read again."""
        for _ in range(len(sections) + 1):
            try:
                return read()
            except ConfigError as error:
                self.report(error)  # raises when starting
                head = re.split(r"[.\[]", error.key, maxsplit=1)[0].upper()
                broken = (head,) if head in sections else sections
                fresh = section_defaults(env)
                for section in broken:
                    config[section] = fresh[section]
                    self.reset.add(section)
        return read()  # every section at its defaults: an error now is the settings class's own


def _related(key: str, other: str) -> bool:
    """Whether one key is the other, or a table or entry that contains it."""
    return any(longer == shorter or (longer.startswith(shorter) and longer[len(shorter)] in ".[")
               for longer, shorter in ((key, other), (other, key)))


def problems_of(app: App) -> Problems:
    """The app's :class:`Problems` (one that raises for an app ``create_app`` did not build)."""
    problems: Problems = app.extensions.get(PROBLEMS) or Problems()
    return problems


def section_defaults(env: str) -> dict[str, Any]:
    """The sections of the environment's settings class alone, before any file or override."""
    settings_class = ENVIRONMENTS[env]
    # A deep copy: the class attributes (lists included) are shared by every app built from them.
    return copy.deepcopy({key: getattr(settings_class, key) for key in dir(settings_class) if key in _SECTIONS})


def load_config(
    env: str | None = None,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
    problems: Problems | None = None,
) -> tuple[str, dict[str, Any]]:
    """The environment's name and its merged raw configuration, sections by upper-case name.

    An unknown section or override variable goes to ``problems`` and is left out; an unknown
    environment or an unreadable file always raises: nothing after it could be judged.
    """
    problems = problems or Problems()
    name = env or environ.get("GATEWAY_ENV") or DEFAULT_ENV
    if name not in ENVIRONMENTS:
        raise ConfigError("GATEWAY_ENV", name, "one of " + ", ".join(sorted(ENVIRONMENTS)))
    config = section_defaults(name)

    path = config_file or environ.get("GATEWAY_CONFIG")
    if path:
        config = _merge(config, _sections(_read_toml(path), config, "GATEWAY_CONFIG " + path, problems))
    config = _merge(config, _environment_overrides(environ, config, problems))
    if overrides:
        config = _merge(config, _sections(overrides, config, "create_app", problems, upper=True))
    return name, {**config, "TESTING": ENVIRONMENTS[name].TESTING}


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError("GATEWAY_CONFIG", path, f"a readable TOML file ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("GATEWAY_CONFIG", path, f"valid TOML ({error})") from None


def _sections(
    data: Mapping[str, Any], known: Mapping[str, Any], origin: str, problems: Problems, upper: bool = False
) -> dict[str, Any]:
    """Map a file's (lower-case) or code's (upper-case) sections onto the known ones."""
    sections = {}
    for key, value in data.items():
        section = key if upper else key.upper()
        if section not in known or (not upper and key != key.lower()):
            names = ", ".join(sorted(k.lower() for k in known))
            problems.report(ConfigError(f"{origin}: [{key}]", value, f"a known section ({names})"))
            continue
        sections[section] = value
    return sections


def _environment_overrides(
    environ: Mapping[str, str], known: Mapping[str, Any], problems: Problems
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for variable, value in environ.items():
        if not variable.startswith(_OVERRIDE_PREFIX) or _OVERRIDE_SEPARATOR not in variable:
            continue
        path = variable[len(_OVERRIDE_PREFIX):].lower().split(_OVERRIDE_SEPARATOR)
        if path[0].upper() not in known or not all(path):
            problems.report(ConfigError(variable, value, "GATEWAY_<SECTION>__<KEY> naming a known section and key"))
            continue
        node = overrides.setdefault(path[0].upper(), {})
        for part in path[1:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value  # a string: Section coerces it to the key's type
    return overrides


def _merge(base: Any, override: Any) -> Any:
    """Tables merge key by key; anything else (arrays included) is replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = {key: _merge(value, {}) if isinstance(value, Mapping) else value for key, value in base.items()}
        for key, value in override.items():
            merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, Mapping) else value
        return merged
    return override


class Section:
    """Typed access to one table of the configuration; every error names the full key.

    Values from environment variables arrive as strings and are coerced to the type asked
    for. :meth:`done` refuses keys nobody asked for, so a typo stops the start.
    """

    def __init__(self, path: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, data, "a table")
        self.path = path
        self._data: Mapping[str, Any] = data
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        """The dotted name of one of this table's keys, as errors show it."""
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        """Whether the table sets ``name`` at all."""
        return name in self._data

    def raw(self, name: str, default: Any = None) -> Any:
        """The value as written, marked as read."""
        self._read.add(name)
        return self._data.get(name, default)

    def string(self, name: str, default: str | None = None, *, choices: Iterable[str] = (),
               pattern: str | None = None, expected: str = "a string") -> str:
        """A non-empty string, optionally one of ``choices`` or matching ``pattern``."""
        value = self.raw(name, default)
        options = tuple(choices)
        if options:
            expected = "one of " + ", ".join(options)
        if not isinstance(value, str) or not value or (options and value not in options):
            raise ConfigError(self.key(name), value, expected)
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ConfigError(self.key(name), value, expected)
        return value

    def optional_string(self, name: str) -> str | None:
        """A string when the key is set, else None."""
        return self.string(name) if self.raw(name) is not None else None

    def integer(self, name: str, default: int | None = None, *, minimum: int = 0) -> int:
        """A whole number no smaller than ``minimum``."""
        value = self.raw(name, default)
        if isinstance(value, str):
            value = _parse(value, int)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(self.key(name), value, f"a whole number >= {minimum}")
        return value

    def seconds(self, name: str, default: float | None = None) -> float:
        """A positive number of seconds."""
        value = self.raw(name, default)
        if isinstance(value, str):
            value = _parse(value, float)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 86400:
            raise ConfigError(self.key(name), value, "a number of seconds > 0 and < 86400")
        return float(value)

    def boolean(self, name: str, default: bool | None = None) -> bool:
        """true or false (from the environment also 1/0, yes/no, on/off)."""
        value = self.raw(name, default)
        if isinstance(value, str):
            value = _BOOLEANS.get(value.strip().lower(), value)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), value, "true or false")
        return value

    def strings(self, name: str, default: Iterable[str] = (), *, allow_empty: bool = True) -> tuple[str, ...]:
        """A list of strings (from the environment a TOML array or comma-separated words)."""
        value = self.raw(name, list(default))
        if isinstance(value, str):
            value = _parse_list(value)
        if (
            not isinstance(value, list)
            or not all(isinstance(item, str) and item for item in value)
            or (not value and not allow_empty)
        ):
            raise ConfigError(self.key(name), value, "a list of strings" + ("" if allow_empty else ", not empty"))
        return tuple(value)

    def table(self, name: str) -> Section:
        """A nested table."""
        return Section(self.key(name), self.raw(name, {}))

    def tables(self) -> list[Section]:
        """Every key of this table as a nested table (``[upstreams.NAME]`` style)."""
        return [self.table(name) for name in self._data]

    def done(self) -> None:
        """Refuse any key that no reader asked for."""
        for name in self._data:
            if name not in self._read:
                raise ConfigError(self.key(name), self._data[name], "no such key (misspelt?)")


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _parse(text: str, kind: type[int] | type[float]) -> object:
    try:
        return kind(text.strip())
    except ValueError:
        return text


def _parse_list(text: str) -> object:
    if text.lstrip().startswith("["):
        try:
            return tomllib.loads("value = " + text)["value"]
        except tomllib.TOMLDecodeError:
            return text
    return [item.strip() for item in text.split(",") if item.strip()]
