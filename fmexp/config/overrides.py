"""Reading config input: YAML files and Hydra-grammar overrides onto OmegaConf structured configs.

Every failure is a ``ConfigError`` whose message names the file (or override) and the dotted key.
Overrides are parsed by hydra-core: ``key=value`` changes, ``+key=value`` adds to a mapping,
``~key`` deletes; sweep expressions (``choice(...)``) are refused here and parsed by ``fmexp.sweep.runner``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fmexp.errors import ConfigError
from fmexp.registry import did_you_mean

__all__ = ["not_one_of", "parse_overrides", "apply_overrides", "structured", "to_object", "read_text", "read_yaml"]

T = TypeVar("T")


def not_one_of(key: str, value: Any, allowed: Sequence[Any]) -> str:
    """``key: 'valu' is not one of [...]; did you mean 'value'?``: the one wording of a bad name."""
    return f"{key}: {value!r} is not one of {list(allowed)}{did_you_mean(value, allowed)}"


def parse_overrides(overrides: Sequence[str], source: str = "overrides") -> list[Any]:
    """Parse ``key=value`` strings with hydra-core's override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise ConfigError(f"{source}: {' '.join(overrides)}: {e}") from None


def apply_overrides(cfg: DictConfig, overrides: Sequence[str], source: str = "overrides") -> None:
    """Apply Hydra-grammar overrides in place: ``key=value`` changes, ``+key=value`` adds, ``~key`` deletes."""
    for ov in parse_overrides(overrides, source):
        key = ov.key_or_group
        if ov.is_sweep_override():
            raise ConfigError(f"{source}: {ov.input_line!r} is a sweep; put it in a study's search_space")
        try:
            if ov.is_delete():
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if node is None or leaf not in node:
                    raise ConfigError(f"{source}: cannot delete {key}: no such key")
                with _unlocked(node):
                    del node[leaf]
            elif ov.is_add():
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if not isinstance(node, DictConfig):
                    raise ConfigError(f"{source}: cannot add {key}: {parent or 'the root'} is not a mapping")
                if leaf in node:
                    raise ConfigError(f"{source}: cannot add {key}: it exists (drop the '+')")
                node.merge_with({leaf: ov.value()})
            else:
                if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                    parent, _, leaf = key.rpartition(".")
                    node = OmegaConf.select(cfg, parent) if parent else cfg
                    known = (
                        [f"{parent}.{k!s}" if parent else str(k) for k in node] if isinstance(node, DictConfig) else []
                    )
                    raise ConfigError(
                        f"{source}: unknown key: {key!r} is not one of {known}{did_you_mean(key, known)}"
                        f" (use +{key}=... to add an entry to a dict)"
                    )
                OmegaConf.update(cfg, key, ov.value(), merge=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{source}: {key}: {_reason(e)}") from None


_MISSING = object()


class _unlocked:
    def __init__(self, node: DictConfig) -> None:
        self.node = node

    def __enter__(self) -> None:
        OmegaConf.set_struct(self.node, False)

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.node, True)


def _reason(e: OmegaConfBaseException) -> str:
    return str(e).split("\n")[0]


def structured(schema: type[T], data: dict[str, Any] | DictConfig | None, source: str) -> DictConfig:
    """Merge ``data`` onto the schema's defaults; unknown keys and wrong types raise ``ConfigError``."""
    base = OmegaConf.structured(schema)
    try:
        return cast(DictConfig, OmegaConf.merge(base, data or {}))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"{source}: {key + ': ' if key else ''}{_reason(e)}{_did_you_mean(e)}") from None


def _did_you_mean(e: OmegaConfBaseException) -> str:
    """For an unknown key: the schema's keys at that level, and the closest one."""
    import dataclasses

    from omegaconf.errors import ConfigKeyError

    schema = getattr(e, "object_type", None)
    if not isinstance(e, ConfigKeyError) or not dataclasses.is_dataclass(schema):
        return ""
    allowed = [f.name for f in dataclasses.fields(schema)]
    return f"; allowed keys: {allowed}{did_you_mean(getattr(e, 'key', ''), allowed)}"


def to_object(cfg: DictConfig, source: str) -> Any:
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: {getattr(e, 'full_key', '')}: {_reason(e)}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_text(path: str | Path) -> str:
    """The text of ``path``; ``ConfigError`` naming it where it cannot be read."""
    try:
        return Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def read_yaml(path: str | Path, text: str | None = None) -> dict[str, Any]:
    """A YAML mapping from ``path`` (whose ``text``, where already read); a syntax error, a duplicate key
    or a non-mapping raises ``ConfigError`` naming the file."""
    if text is None:
        text = read_text(path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
