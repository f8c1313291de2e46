"""The loader: TOML text to a validated :class:`~gateway.config.schema.Config`. It walks the
schema's type hints, so an unknown key or a wrong type is an error naming the key path
(``gpio.devices[1].pin``) and its line."""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from gateway.config.fields import FieldError, Secret
from gateway.config.schema import Config
from gateway.errors import ConfigError


def load(path: Path) -> Config:
    """Read and validate a config file; every problem is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return loads(text, base_dir=path.parent)


def loads(text: str, *, base_dir: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigError("not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", line=int(match.group(1)) if match else None
        ) from None
    loader = _Loader(text, base_dir or Path.cwd())
    cfg: Config = loader.build(Config, data, "")
    return cfg


def from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None) -> Config:
    cfg: Config = _Loader("", base_dir or Path.cwd()).build(Config, data, "")
    return cfg


class _Loader:
    def __init__(self, text: str, base_dir: Path) -> None:
        self._lines = text.splitlines()
        self._base = base_dir

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, line=self.line_of(path))

    def line_of(self, path: str) -> int | None:
        """Best-effort line number of a dotted key path such as ``gpio.devices[1].pin``."""
        if not self._lines or not path:
            return None
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        table: list[str] = []
        counts: dict[str, int] = {}
        best: int | None = None
        prefix: int | None = None
        prefix_len = 0
        want_tables = list(parts[:-1])
        for lineno, raw in enumerate(self._lines, 1):
            line = raw.strip()
            if m := re.fullmatch(r"\[\[\s*([^\]]+?)\s*\]\](\s*#.*)?", line):
                table = _array_table_path(m.group(1).split("."), counts)
            elif m := re.fullmatch(r"\[\s*([^\]]+?)\s*\](\s*#.*)?", line):
                table = m.group(1).split(".")
            elif m := re.match(r"""["']?([^"'=\s]+)["']?\s*=""", line):
                key = m.group(1)
                full = [*table, *key.split(".")]
                if full == parts:
                    return lineno
                if full == want_tables and best is None:
                    best = lineno
                if len(full) > prefix_len and full == parts[: len(full)]:
                    # an inline table or array holds the key: the line of the outer key
                    prefix, prefix_len = lineno, len(full)
            if table in (parts, want_tables) and best is None:
                best = lineno
        return best if best is not None else prefix

    def build(self, cls: type[Any], data: Any, path: str) -> Any:
        if not isinstance(data, Mapping):
            raise self.error(path, f"must be a table, not {_tname(data)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else key
            if key not in fields:
                import difflib  # ~0.14 MB: only for a config that has a mistake

                close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.7)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(sorted(fields))
                raise self.error(sub, f"unknown key{hint}; known keys here: {known}")
            kwargs[key] = self.convert(hints[key], value, sub)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            if exc.line is None and exc.path:
                raise ConfigError(
                    str(exc).split(": ", 1)[-1], path=exc.path, line=self.line_of(exc.path)
                ) from None
            raise
        except FieldError as exc:
            raise self.error(f"{path}.{exc.field}" if path else exc.field, exc.message) from None
        except (ValueError, TypeError) as exc:
            raise self.error(path or "config", str(exc)) from None

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.convert(arg, value, path)
                except ConfigError as exc:
                    errors.append(exc)
            names = " or ".join(_hname(a) for a in args if a is not type(None))
            raise self.error(path, f"must be {names}, not {_tname(value)}")
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            # an enumeration of strings (the GPIO kinds): chosen by value, like a Literal
            return tp(self.convert(Literal[tuple(m.value for m in tp)], value, path))
        if origin is Literal:
            if value not in args:
                choices = ", ".join(repr(a) for a in args)
                raise self.error(path, f"must be one of {choices}, not {value!r}")
            return value
        if origin is tuple:
            if not isinstance(value, list):
                raise self.error(path, f"must be an array, not {_tname(value)}")
            return tuple(self.convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is dict:
            if not isinstance(value, Mapping):
                raise self.error(path, f"must be a table, not {_tname(value)}")
            return {str(k): self.convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)  # type: ignore[arg-type]
        if tp is bool:
            if not isinstance(value, bool):
                raise self.error(path, f"must be true or false, not {_tname(value)}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(path, f"must be an integer, not {_tname(value)}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(path, f"must be a number, not {_tname(value)}")
            if not math.isfinite(value):
                raise self.error(path, f"must be a finite number, not {value}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise self.error(path, f"must be a string, not {_tname(value)}")
            return value
        if tp is Path:
            if not isinstance(value, str) or not value:
                raise self.error(path, f"must be a path string, not {_tname(value)}")
            try:
                p = Path(value).expanduser()
            except RuntimeError as exc:  # ~nosuchuser
                raise self.error(path, f"cannot expand {value!r}: {exc}") from None
            return p if p.is_absolute() else (self._base / p)
        if tp is Secret:
            if not isinstance(value, str):
                raise self.error(path, f"must be a string, not {_tname(value)}")
            return Secret(value)
        raise self.error(path, f"unsupported type {tp!r}")  # pragma: no cover - schema bug


def _array_table_path(names: list[str], counts: dict[str, int]) -> list[str]:
    """``[[automations.triggers]]`` -> ``automations [2] triggers [0]``: a nested array of
    tables is numbered within the current element of its parent array."""
    path: list[str] = []
    for i, name in enumerate(names):
        path.append(name)
        key = ".".join(path)
        if i == len(names) - 1:
            counts[key] = counts.get(key, -1) + 1
        if key in counts:
            path.append(f"[{counts[key]}]")
    return path


def _tname(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _hname(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).lower().replace("str", "string")
