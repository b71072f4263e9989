"""Load an environment's topology from ``inventories/<env>/*.yaml``, safely.

- YAML is parsed by libyaml; Python values are built straight from its event stream
  with PyYAML's safe typing of scalars: no language-specific tags, no anchors or aliases
  (so no alias-expansion bombs), no duplicate keys, bounded nesting, one document per
  file, and a size limit. Every mapping remembers where it, its keys and its values
  stood; entities read their location from it on demand (:func:`dualdc.model.set_positions`).
- The files of an environment are merged: the list sections concatenate, and
  ``environment`` must be declared in exactly one file.
- Every problem is collected and reported at once, sorted, as ``file:line:column``, the
  field path, what was expected and what was found. :class:`TopologyError` carries them;
  the commands print them and exit 1. Whatever the input, nothing else escapes.
- Reference problems (a name that is declared nowhere) are found once every field is
  valid, so they show up after the field problems are fixed.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dualdc.base.redact import clean, shorten, shown
from dualdc.model import ENTITY_LISTS, Entity, ReferenceErrors, Topology, set_positions

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
INVENTORIES = Path("inventories")
TOP_LEVEL = ("environment", *ENTITY_LISTS)
SUFFIXES = (".yaml", ".yml")
# Files that live beside the topology but are not part of it.
NOT_TOPOLOGY = frozenset({"inventory.dualdc.yml", "drift-ack.yaml"})

Pos = tuple[str, int, int]


@dataclass(frozen=True, order=True)
class LoadProblem:
    """One readable input problem."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class TopologyError(Exception):
    """The topology could not be loaded; :attr:`problems` says every reason."""

    def __init__(self, problems: list[LoadProblem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class PosDict(dict[Any, Any]):
    """A mapping that remembers where it, each of its keys and each of its values stood."""

    __slots__ = ("key_pos", "pos", "value_pos")

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.value_pos: dict[Any, Pos] = {}
        self.key_pos: dict[Any, Pos] = {}


class PosList(list[Any]):
    """A sequence that remembers where it and each of its items stood."""

    __slots__ = ("item_pos", "pos")

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.item_pos: list[Pos] = []


class _YamlInputError(Exception):
    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


#: Deepest nesting a topology needs is about 6; anything far deeper is hostile or broken.
MAX_DEPTH = 64
_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
#: Tags a scalar may carry (resolved implicitly, or written explicitly as ``!!int`` …).
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_MAP_TAGS = frozenset({None, "!", _TAG + "map"})
_SEQ_TAGS = frozenset({None, "!", _TAG + "seq"})
_CLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: PyYAML's implicit resolvers (YAML 1.1 as PyYAML's safe_load reads it), by first character.
_RESOLVERS: dict[str | None, list[tuple[str, Any]]] = {
    first: list(found) for first, found in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_UNSET: Any = object()


def _resolve_plain(value: str) -> str:
    """The tag PyYAML's safe loader gives a plain scalar (same rules, same order)."""
    candidates = _RESOLVERS.get(value[0] if value else "", []) + _RESOLVERS.get(None, [])
    for tag, regexp in candidates:
        if regexp.match(value):
            return tag
    return _STR


def _construct(tag: str, value: str, mark: yaml.Mark) -> Any:
    """A scalar's Python value, built by PyYAML's SafeConstructor for the allowed tags."""
    if tag == _STR:
        return value
    if tag == _TAG + "merge":
        raise _YamlInputError(mark, "merge keys ('<<') are not allowed in a topology")
    if tag not in _SCALAR_TAGS:
        raise _YamlInputError(mark, f"the tag {tag!r} is not allowed in a topology")
    try:
        return _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, value, mark, mark))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise _YamlInputError(mark, f"invalid {tag.removeprefix(_TAG)} value {shown(value)}: "
                                    f"{shorten(str(exc), 120)}") from None


def _build(loader: Any, file_name: str) -> Any:
    """Build PosDict/PosList from libyaml's event stream (one document), checking as it goes.

    Refuses anchors and aliases (no expansion bombs), tags other than YAML's standard
    scalar/map/seq tags (no language-specific objects), duplicate and non-scalar keys,
    nesting deeper than :data:`MAX_DEPTH` and more than one document. Much faster than
    composing a node graph first, which matters for large topologies.
    """
    get_event = loader.get_event
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    cache: dict[str, Any] = {}
    unset = _UNSET
    # The open collections, innermost last, each saved with its pending mapping key. The
    # current one is unpacked into locals (``positions`` is its value_pos or item_pos).
    stack: list[tuple[Any, bool, Any]] = []
    container: Any = None
    positions: Any = None
    key_positions: Any = None
    is_map = False
    key: Any = unset
    root: Any = unset
    get_event()  # StreamStart
    if isinstance(get_event(), yaml.StreamEndEvent):
        return None
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar_event:
            mark = event.start_mark
            if event.tag is None and event.anchor is None and event.implicit[0]:
                text = event.value
                value = cache.get(text, unset)
                if value is unset:
                    value = cache[text] = _construct(_resolve_plain(text), text, mark)
            else:
                value = _special_scalar(event)
            pos = (file_name, mark.line + 1, mark.column + 1)
        elif kind is map_start or kind is seq_start:
            _check_collection(event, len(stack))
            mark = event.start_mark
            stack.append((container, is_map, key))
            pos = (file_name, mark.line + 1, mark.column + 1)
            is_map = kind is map_start
            key = unset
            if is_map:
                container = PosDict(pos)
                positions, key_positions = container.value_pos, container.key_pos
            else:
                container = PosList(pos)
                positions = container.item_pos
            continue
        elif kind is map_end or kind is seq_end:
            value = container
            pos = value.pos
            container, is_map, key = stack.pop()
            if container is not None:
                if is_map:
                    positions, key_positions = container.value_pos, container.key_pos
                else:
                    positions = container.item_pos
        elif kind is alias_event:
            raise _YamlInputError(event.start_mark, "anchors and aliases are not allowed in a topology")
        else:  # DocumentEnd
            event = get_event()
            if not isinstance(event, yaml.StreamEndEvent):
                raise _YamlInputError(event.start_mark, "a topology file holds exactly one YAML document")
            return root
        # attach the finished node to the collection it is in
        if not is_map:
            if container is None:
                root = value
            else:
                container.append(value)
                positions.append(pos)
        elif key is unset:
            if type(value) is PosDict or type(value) is PosList:
                raise _YamlInputError(_mark_at(pos), "a mapping key must be a plain value")
            if value in key_positions:
                first = key_positions[value]
                raise _YamlInputError(_mark_at(pos), f"duplicate key {value!r} (first at line {first[1]})")
            key = value
            key_positions[value] = pos
        else:
            container[key] = value
            positions[key] = pos
            key = unset


def _special_scalar(event: Any) -> Any:
    """A scalar with an anchor, a tag or quotes (the rare, slow path)."""
    if event.anchor is not None:
        raise _YamlInputError(event.start_mark, "anchors and aliases are not allowed in a topology")
    tag, text = event.tag, event.value
    if tag is None:
        return _construct(_resolve_plain(text), text, event.start_mark) if event.implicit[0] else text
    if tag == "!":
        return text
    return _construct(tag, text, event.start_mark)


def _check_collection(event: Any, depth: int) -> None:
    if event.anchor is not None:
        raise _YamlInputError(event.start_mark, "anchors and aliases are not allowed in a topology")
    if event.tag not in (_MAP_TAGS if type(event) is yaml.MappingStartEvent else _SEQ_TAGS):
        raise _YamlInputError(event.start_mark, f"the tag {event.tag!r} is not allowed in a topology")
    if depth >= MAX_DEPTH:
        raise _YamlInputError(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")


def _mark_at(pos: Pos) -> yaml.Mark:
    return yaml.Mark(pos[0], 0, pos[1] - 1, pos[2] - 1, None, 0)


def display_path(path: Path) -> str:
    """A path relative to the working directory where it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # outside, or a link loop
        return str(path)


def parse_yaml(text: str | bytes, file_name: str) -> Any:
    """Parse one YAML document safely; raise :class:`TopologyError` on any problem."""
    loader = _CLoader(text)
    try:
        try:
            return _build(loader, file_name)
        finally:
            loader.dispose()
    except _YamlInputError as exc:
        line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (0, 0)
        raise TopologyError([LoadProblem(file_name, line, col, "", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise TopologyError([LoadProblem(file_name, line, col, "", f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise TopologyError([LoadProblem(file_name, 0, 0, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise TopologyError([LoadProblem(file_name, 0, 0, "", "invalid YAML: nested too deeply")]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise TopologyError([LoadProblem(file_name, 0, 0, "", f"invalid YAML value: {exc}")]) from None


def topology_files(path: Path) -> list[Path]:
    """The YAML files of a topology: a folder's ``*.yaml``/``*.yml`` (sorted), or one file.

    Every candidate is listed, whatever it is: :func:`read_topology_file` then refuses what
    is not a regular file (a FIFO, a device, a dangling link, a link loop) with a reason,
    rather than the file being skipped in silence.
    """
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in SUFFIXES
                      and not p.name.startswith(".") and p.name not in NOT_TOPOLOGY
                      and not (p.is_dir() and not p.is_symlink()))
    return [path]


def _link_problem(path: Path) -> str | None:
    """Why a path that is a symbolic link cannot be followed, or None."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:
        return "a symbolic link loop"
    except FileNotFoundError:
        return f"a dangling symbolic link (to {shorten(os.readlink(path), 120)!r}, which does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"a symbolic link that cannot be followed: {exc.strerror or exc}"
    return None


def read_topology_file(path: Path, budget: int) -> bytes:
    """Read one topology file: a regular file only, never more than ``budget`` bytes.

    Opened without blocking (a FIFO never hangs the command) and checked on the open
    descriptor (no race with a swapped file); the size is counted while reading, since
    ``stat`` can lie (``/proc`` files, a file that grows). Raises ``OSError`` with a
    readable ``strerror``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "a symbolic link loop") from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                    or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a folder"
                    if stat.S_ISDIR(mode) else "not a regular file")
            raise OSError(errno.EINVAL, f"{kind}: only regular files are read")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = handle.read(min(1 << 20, budget - size + 1))
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > budget:
                raise OSError(errno.EFBIG, "the topology exceeds the size limit; refusing to read further")
            chunks.append(chunk)


def _merge(documents: list[tuple[str, Any]]) -> tuple[PosDict, list[LoadProblem]]:
    problems: list[LoadProblem] = []
    merged = PosDict(("<merged>", 0, 0))
    for file_name, doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, PosDict):
            problems.append(LoadProblem(file_name, 1, 1, "", f"expected a mapping of sections "
                                        f"({', '.join(TOP_LEVEL)}), found {type(doc).__name__}"))
            continue
        for key, value in doc.items():
            line, col = doc.key_pos[key][1:]
            if key not in TOP_LEVEL:
                problems.append(LoadProblem(file_name, line, col, shorten(str(key), 40),
                                            f"unknown section; expected one of {', '.join(TOP_LEVEL)}"))
                continue
            if key == "environment":
                if key in merged:
                    first = merged.key_pos[key]
                    problems.append(LoadProblem(file_name, line, col, key,
                                                f"declared again (first in {first[0]}:{first[1]})"))
                    continue
                merged[key] = value
                merged.value_pos[key] = doc.value_pos[key]
                merged.key_pos[key] = doc.key_pos[key]
                continue
            if not isinstance(value, PosList):
                if value is None:
                    continue
                problems.append(LoadProblem(file_name, line, col, key,
                                            f"expected a list, found {type(value).__name__}"))
                continue
            target = merged.get(key)
            if target is None:
                target = merged[key] = PosList(doc.value_pos[key])
                merged.value_pos[key] = doc.value_pos[key]
                merged.key_pos[key] = doc.key_pos[key]
            target.extend(value)
            target.item_pos.extend(value.item_pos)
    return merged, problems


def _locate(data: Any, loc: tuple[str | int, ...], at_key: bool = False) -> tuple[Pos | None, str]:
    """The position of the deepest element of ``loc`` found in ``data``, and a readable path.

    With ``at_key``, a final mapping element is located at its key (for "unknown field")
    rather than at its value.
    """
    pos: Pos | None = getattr(data, "pos", None)
    parts: list[str] = []
    node = data
    for i, element in enumerate(loc):
        if isinstance(node, PosDict) and element in node:
            last = at_key and i == len(loc) - 1
            pos = node.key_pos.get(element, node.value_pos[element]) if last else node.value_pos[element]
            node = node[element]
            parts.append(str(element))
        elif isinstance(node, PosList) and isinstance(element, int) and 0 <= element < len(node):
            pos = node.item_pos[element]
            node = node[element]
            label = node.get("name") if isinstance(node, PosDict) else None
            item = f"[{label if isinstance(label, str) else element}]"
            if parts:
                parts[-1] += item
            else:
                parts.append(item)
        else:
            if isinstance(element, str) and not element.startswith(("function-", "list[", "literal[")):
                parts.append(element)
            break
    return pos, ".".join(parts)


def _found(value: Any) -> str:
    return shown(value, 60)


def _validation_problems(merged: PosDict, exc: ValidationError, fallback: str) -> list[LoadProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        pos, path = _locate(merged, loc, at_key=err["type"] == "extra_forbidden")
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field (not part of the topology model)"
        else:
            message = f"{err['msg']}; found {_found(err.get('input'))}"
        file, line, col = pos if pos and pos[0] != "<merged>" else (fallback, 0, 0)
        problems.append(LoadProblem(file, line, col, path, message))
    return problems


#: Per entity class: its fields holding an entity or a list of entities.
_NESTED: dict[type[Entity], list[str]] = {}


def _nested_fields(cls: type[Entity]) -> list[str]:
    found = _NESTED.get(cls)
    if found is None:
        found = []
        for name, info in cls.model_fields.items():
            text = repr(info.annotation)
            if any(sub.__name__ in text for sub in _entity_classes()):
                found.append(name)
        _NESTED[cls] = found
    return found


def _entity_classes() -> list[type[Entity]]:
    classes: list[type[Entity]] = []
    pending = list(Entity.__subclasses__())
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    return classes


def _attach_sources(entity: Entity, data: Any) -> None:
    """Let every entity know the YAML mapping it came from (see :func:`set_positions`)."""
    if not isinstance(data, PosDict):
        return
    set_positions(entity, data)
    for field_name in _nested_fields(type(entity)):
        value = getattr(entity, field_name)
        raw = data.get(field_name)
        if isinstance(value, Entity):
            _attach_sources(value, raw)
        elif isinstance(value, list) and isinstance(raw, list):
            for item, raw_item in zip(value, raw, strict=False):
                if isinstance(item, Entity):
                    _attach_sources(item, raw_item)


def load_topology(path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Topology:
    """Load and validate the topology in ``path`` (a folder of YAML files, or one file).

    The cyclic garbage collector is paused meanwhile: loading only builds objects that stay
    alive, and on a large topology the collector's repeated scans of them cost more than
    the parsing itself.
    """
    with gc_paused():
        return _load_topology(Path(path), max_bytes)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building large, long-lived structures.

    Each collection scans every tracked object; building 100,000s of them triggers many
    collections that find nothing to free. Reference counting still frees everything else.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_topology(path: Path, max_bytes: int) -> Topology:
    where = display_path(path)
    link = _link_problem(path)
    if link:
        raise TopologyError([LoadProblem(where, 0, 0, "", f"cannot read: {link}")])
    if not path.exists():
        raise TopologyError([LoadProblem(where, 0, 0, "", "no such file or folder")])
    if not path.is_dir() and path.suffix not in SUFFIXES:
        raise TopologyError([LoadProblem(where, 0, 0, "", "not a topology: give a folder of YAML files or "
                                         "one file named *.yaml or *.yml")])
    try:
        files = topology_files(path)
    except OSError as exc:
        raise TopologyError([LoadProblem(where, 0, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    if not files:
        raise TopologyError([LoadProblem(where, 0, 0, "", "no *.yaml files in this folder")])
    budget = max_bytes
    problems: list[LoadProblem] = []
    documents: list[tuple[str, Any]] = []
    for file in files:
        name = display_path(file)
        try:
            link = _link_problem(file)
            if link:
                raise OSError(errno.ELOOP, link)
            if budget < 0:
                raise OSError(errno.EFBIG, "the topology exceeds the size limit; refusing to read further")
            raw = read_topology_file(file, budget)
            budget -= len(raw)
            documents.append((name, parse_yaml(raw, name)))
        except TopologyError as exc:
            problems.extend(exc.problems)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EFBIG:
                reason = f"the topology exceeds the size limit of {max_bytes} bytes; refusing to read further"
            problems.append(LoadProblem(name, 0, 0, "", f"cannot read: {reason}"))
    merged, merge_problems = _merge(documents)
    problems.extend(merge_problems)
    if problems:
        raise TopologyError(problems)
    if "environment" not in merged:
        raise TopologyError([LoadProblem(where, 0, 0, "environment", "required section is missing "
                                         "(declare it in exactly one file)")])
    try:
        topology = Topology.model_validate(merged)
    except ValidationError as exc:
        raise TopologyError(_validation_problems(merged, exc, where)) from None
    except ReferenceErrors as exc:
        found = []
        for problem in exc.problems:
            pos, path_text = _locate(merged, problem.loc)
            at, line, col = pos if pos else (where, 0, 0)
            found.append(LoadProblem(at, line, col, path_text, problem.message))
        raise TopologyError(found) from None
    _attach_sources(topology, merged)
    return topology


#: Problems listed in one message; a hostile input still fits one screen.
MAX_PROBLEMS_SHOWN = 40


def format_problems(exc: TopologyError) -> str:
    """One line per problem, capped so a hostile input still fits one screen."""
    lines = [str(p) for p in exc.problems[:MAX_PROBLEMS_SHOWN]]
    if len(exc.problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"... and {len(exc.problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
    count = len(exc.problems)
    header = f"error: the topology is invalid ({count} problem{'s' if count != 1 else ''}):"
    return clean("\n".join([header, *lines]))


def environment_path(env: str, root: Path = INVENTORIES) -> Path:
    """The folder of a named environment; refuses names that are not plain folder names."""
    if not env or os.sep in env or env.startswith(".") or (os.altsep and os.altsep in env):
        what = "an empty environment name" if not env else f"invalid environment name {shown(env, 60)}"
        raise TopologyError([LoadProblem(str(root), 0, 0, "", what)])
    path = root / env
    if not path.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise TopologyError([LoadProblem(display_path(path), 0, 0, "",
                                         f"no such environment (known: {', '.join(known) or 'none'})")])
    return path


def load_environment(env: str, root: Path = INVENTORIES) -> Topology:
    """Load ``inventories/<env>/``."""
    return load_topology(environment_path(env, root))
