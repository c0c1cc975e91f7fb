"""Configs: frozen dataclasses loaded from YAML (unknown keys rejected), stored in checkpoints.

An :class:`EnhancerConfig` says everything needed to rebuild an enhancer: which
codec (and its weights), the U-Net size and the diffusion parameterisation.
Training configs (``enhancer.train``) embed it under the key ``model``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from enhancer.models.unet import PRESETS, UNetConfig

T = TypeVar("T")
_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


class ConfigError(ValueError):
    """A config with an unknown key, a wrong type or an impossible value."""


@dataclass(frozen=True)
class CodecConfig:
    name: str = "ssf"
    quality: int = 3
    checkpoint: str | None = None  # a weights file in the codec's layout, or None: random weights
    intra_period: int = -1


@dataclass(frozen=True)
class DiffusionConfig:
    prediction: str = "x0"  # x0 | eps | v
    target: str = "residual"  # residual (ours) | image (the CDC baseline)
    residual_gain: float = 10.0  # clean signal = residual_gain * (x - decoded); not the output blend
    min_snr_gamma: float | None = 5.0

    # Older files spell these keys differently; from_dict reads both.
    LEGACY_KEYS = {"residual_scale_factor": "residual_gain"}


@dataclass(frozen=True)
class EnhancerConfig:
    codec: CodecConfig = field(default_factory=CodecConfig)
    unet: str | UNetConfig = "tiny"  # a preset name or a full UNetConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    temporal: bool = True  # video: the previous enhanced frame is an input
    # the decode's codec quality (CodecAdapter.quality_level) is an input: one model for
    # a conventional codec's whole CRF range that knows how sharp the decode already is
    quality_conditioning: bool = False

    def unet_config(self) -> UNetConfig:
        if isinstance(self.unet, UNetConfig):
            return self.unet
        if self.unet not in PRESETS:
            raise ConfigError(f"unknown U-Net preset {self.unet!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[self.unet]


def from_dict(cls: type[T], values: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types are errors."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    values = _rename_legacy(values, getattr(cls, "LEGACY_KEYS", {}))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in values.items()}
    return cls(**kwargs)


def _rename_legacy(values: dict[str, Any], legacy: dict[str, str]) -> dict[str, Any]:
    """``values`` with old key names replaced (``LEGACY_KEYS``: old -> new); a new name
    ``section.key`` moves an older flat key into its section, over the section's value."""
    moved = {legacy[key]: value for key, value in values.items() if "." in legacy.get(key, "")}
    values = {legacy.get(key, key): value for key, value in values.items()
              if "." not in legacy.get(key, "")}
    for target, value in moved.items():
        section, name = target.split(".", 1)
        values[section] = {**(values.get(section) or {}), name: value}
    return values


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if hint is UNetConfig and isinstance(value, dict):
            try:
                return UNetConfig.from_dict(value)
            except (ValueError, TypeError) as err:
                raise ConfigError(f"{where}: {err}") from err
        try:
            return from_dict(hint, value, where)
        except (ValueError, TypeError) as err:  # a dataclass's own checks
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{where}: {err}") from err
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        items = [_convert(item, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{where}: cannot read a value of type {hint}")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (lists for tuples) for YAML, JSON and checkpoints."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def load_yaml(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file, then apply ``key.sub=value`` overrides (YAML values).

    A file may start from another: ``base: other.yaml`` (relative to the file) reads that
    one first and then overrides it key by key (sections merge, lists and values replace).
    ``base: [a.yaml, b.yaml]`` merges several in that order (b's keys over a's), e.g. a
    model config and a shared clip list.
    """
    legacy = getattr(cls, "LEGACY_KEYS", {})
    values = _rename_legacy(resolve_yaml(path), legacy)
    for override in overrides or []:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        key, raw = override.split("=", 1)
        first, dot, rest = key.partition(".")
        key = legacy.get(first, first) + dot + rest  # an old name sets the new one
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_yaml(raw, f"override {override!r}")
    return from_dict(cls, values, where=Path(path).name)


def resolve_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The settings of a YAML file with its ``base:`` chain merged in (a plain dict)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.resolve() in _seen:
        chain = " -> ".join(p.name for p in (*_seen, path.resolve()))
        raise ConfigError(f"config {path} names itself as a base ({chain})")
    values = _parse_yaml(path.read_text(), str(path))
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    bases = [base] if isinstance(base, str) else base
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: base must be a file name or a list of file names, got {base!r}")
    merged: dict[str, Any] = {}
    for name in bases:
        merged = _merge(merged, resolve_yaml(path.parent / name, (*_seen, path.resolve())))
    return _merge(merged, values)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML would
    silently keep the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<:``, overridable by design
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no objects
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from None
