"""The checkers: each judges one control on one host from what the collector observed.

A checker is a pure function of its parameters (from the catalogue, checked by its own
pydantic model), the host's observations (:mod:`dualdc.compliance.collector`'s JSON) and
the host's context (lab or not, the model's policy values). It returns the outcome and the
observed value as evidence, so an auditor sees *what* was found, not only a verdict.

Each checker also says what the collector must gather for it (:meth:`Checker.needs`), so the
collector reads exactly the files the catalogue names and nothing else (it never reads
``/etc/shadow``'s content, only its mode).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 (an outcome, not a password)
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    WAIVED = "waived"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    evidence: str
    expected: str = ""


@dataclass
class Context:
    """What a checker may know about the host besides its observations."""

    host: str
    role: str
    lab: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    """Policy values from the model (``password_min_length`` …), referenced as ``$name`` in params."""


@dataclass
class Needs:
    """What the collector must gather for a set of controls."""

    stat: set[str] = field(default_factory=set)
    content: set[str] = field(default_factory=set)
    sysctl: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    packages: set[str] = field(default_factory=set)
    home_files: set[str] = field(default_factory=set)
    sshd: bool = False
    accounts: bool = False
    scan: bool = False
    aide: bool = False
    nft: bool = False
    acct: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "stat": sorted(self.stat),
            "content": sorted(self.content),
            "sysctl": sorted(self.sysctl),
            "modules": sorted(self.modules),
            "packages": sorted(self.packages),
            "home_files": sorted(self.home_files),
            "sshd": self.sshd,
            "accounts": self.accounts,
            "scan": self.scan,
            "aide": self.aide,
            "nft": self.nft,
            "acct": self.acct,
        }


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Judge = Callable[[Any, dict[str, Any], Context], Verdict]


@dataclass(frozen=True)
class Checker:
    kind: str
    params: type[Params]
    judge: Judge
    needs: Callable[[Any, Needs], None]
    doc: str


CHECKS: dict[str, Checker] = {}


def checker(kind: str, params: type[Params], needs: Callable[[Any, Needs], None]) -> Callable[[Judge], Judge]:
    """Register a checker under ``kind`` (its docstring documents it)."""

    def register(judge: Judge) -> Judge:
        CHECKS[kind] = Checker(kind, params, judge, needs, (judge.__doc__ or "").strip())
        return judge

    return register


def resolve(value: Any, ctx: Context) -> Any:
    """A parameter written ``$name`` takes the host's policy value of that name."""
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in ctx.values:
            raise KeyError(f"the model gives no policy value {name!r}")
        return ctx.values[name]
    return value


def _mode(text: str) -> int:
    return int(text, 8)


def _fmt_mode(mode: int) -> str:
    return f"{mode:04o}"


# --------------------------------------------------------------------------- files


class FileModeParams(Params):
    path: str = Field(pattern=r"^/[^\s]*$", description="Absolute path of the file or directory.")
    max_mode: str = Field(
        pattern=r"^[0-7]{3,4}$", description="The loosest mode allowed (octal): no bit beyond it."
    )
    owner: str = Field(default="root", description="Required owner.")
    group: str | None = Field(default=None, description="Required group (None: any).")
    required: bool = Field(
        default=True, description="Fail when the file is missing (else a missing file passes)."
    )


def _stat_needs(p: FileModeParams, n: Needs) -> None:
    n.stat.add(p.path)


@checker("file_mode", FileModeParams, _stat_needs)
def file_mode(p: FileModeParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """Owner, group and mode of a file: no permission bit beyond ``max_mode``."""
    expected = f"{p.path} {p.owner}:{p.group or '*'} at most {p.max_mode}"
    st = obs.get("stat", {}).get(p.path)
    if st is None or not st.get("exists"):
        if p.required:
            return Verdict(Outcome.FAIL, f"{p.path} is missing", expected)
        return Verdict(Outcome.PASS, f"{p.path} is absent", expected)
    mode = _mode(st["mode"])
    seen = f"{p.path} {st['owner']}:{st['group']} {_fmt_mode(mode)}"
    extra = mode & ~_mode(p.max_mode) & 0o7777
    ok = not extra and st["owner"] == p.owner and (p.group is None or st["group"] == p.group)
    return Verdict(Outcome.PASS if ok else Outcome.FAIL, seen, expected)


class FilesAbsentParams(Params):
    paths: list[str] = Field(default_factory=list, description="Absolute paths that must not exist.")
    home_files: list[str] = Field(
        default_factory=list, description="File names that must not exist in any home directory."
    )


def _absent_needs(p: FilesAbsentParams, n: Needs) -> None:
    n.stat.update(p.paths)
    n.home_files.update(p.home_files)


@checker("files_absent", FilesAbsentParams, _absent_needs)
def files_absent(p: FilesAbsentParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """None of the paths exists, and no home directory holds one of the named files."""
    found = [path for path in p.paths if obs.get("stat", {}).get(path, {}).get("exists")]
    found += [path for path in obs.get("home_files", []) if path.rsplit("/", 1)[-1] in p.home_files]
    expected = "absent: " + ", ".join([*p.paths, *(f"~/{f}" for f in p.home_files)])
    if found:
        return Verdict(Outcome.FAIL, "present: " + ", ".join(sorted(found)), expected)
    return Verdict(Outcome.PASS, "none present", expected)


class FileContainsParams(Params):
    path: str = Field(pattern=r"^/[^\s]*$", description="Absolute path of the file.")
    pattern: str = Field(min_length=1, description="Regular expression (multi-line) the file must match.")
    must_match: bool = Field(
        default=True, description="False: the file must not match (a missing file passes)."
    )
    what: str = Field(min_length=3, description="What the match means, for the evidence.")


def _content_needs(p: FileContainsParams, n: Needs) -> None:
    n.content.add(p.path)


@checker("file_contains", FileContainsParams, _content_needs)
def file_contains(p: FileContainsParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """A file's content matches (or, with ``must_match: false``, does not match) a pattern."""
    text = obs.get("content", {}).get(p.path)
    pattern = str(resolve_pattern(p.pattern, ctx))
    expected = f"{p.path}: {p.what}"
    if text is None:
        if p.must_match:
            return Verdict(Outcome.FAIL, f"{p.path} is missing or unreadable", expected)
        return Verdict(Outcome.PASS, f"{p.path} is absent", expected)
    found = re.search(pattern, text, re.MULTILINE)
    if p.must_match:
        if found:
            return Verdict(Outcome.PASS, f"{p.path}: {found.group(0).strip()[:160]}", expected)
        return Verdict(Outcome.FAIL, f"{p.path}: no line matches {pattern}", expected)
    if found:
        return Verdict(Outcome.FAIL, f"{p.path}: {found.group(0).strip()[:160]}", expected)
    return Verdict(Outcome.PASS, f"{p.path}: nothing matches {pattern}", expected)


def resolve_pattern(pattern: str, ctx: Context) -> str:
    """``${name}`` in a pattern takes the host's policy value (escaped)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: re.escape(str(resolve("$" + m.group(1), ctx))), pattern)


class ConfigValueParams(Params):
    path: str = Field(
        pattern=r"^/[^\s]*$", description="The configuration file (KEY value or key = value lines)."
    )
    key: str = Field(min_length=1, description="The setting's key.")
    equals: str | int | None = Field(default=None, description="Required value (or $policy-name).")
    min: int | str | None = Field(default=None, description="Smallest allowed number (or $policy-name).")
    max: int | str | None = Field(default=None, description="Largest allowed number (or $policy-name).")
    case_sensitive: bool = Field(default=False, description="Compare the value case-sensitively.")


def _config_needs(p: ConfigValueParams, n: Needs) -> None:
    n.content.add(p.path)


def parse_config(text: str) -> dict[str, str]:
    """``KEY value`` and ``key = value`` lines; the last one of a key wins; comments dropped."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.split(None, 1)
        if "=" in first[0] or (len(first) > 1 and first[1].startswith("=")):
            key, _, value = line.partition("=")
        else:
            key, value = first[0], first[1] if len(first) > 1 else ""
        values[key.strip()] = value.strip()
    return values


@checker("config_value", ConfigValueParams, _config_needs)
def config_value(p: ConfigValueParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """One setting of a ``KEY value`` / ``key = value`` file (login.defs, pwquality.conf …)."""
    text = obs.get("content", {}).get(p.path)
    want_eq, lo, hi = resolve(p.equals, ctx), resolve(p.min, ctx), resolve(p.max, ctx)
    parts = []
    if want_eq is not None:
        parts.append(f"= {want_eq}")
    if lo is not None:
        parts.append(f">= {lo}")
    if hi is not None:
        parts.append(f"<= {hi}")
    expected = f"{p.path}: {p.key} {' and '.join(parts)}"
    if text is None:
        return Verdict(Outcome.FAIL, f"{p.path} is missing or unreadable", expected)
    value = parse_config(text).get(p.key)
    if value is None:
        return Verdict(Outcome.FAIL, f"{p.path}: {p.key} is not set", expected)
    seen = f"{p.path}: {p.key} {value}"
    ok = True
    if want_eq is not None:
        ok = value == str(want_eq) if p.case_sensitive else value.lower() == str(want_eq).lower()
    if lo is not None or hi is not None:
        try:
            number = int(value, 0) if not value.startswith("0") or value == "0" else int(value, 8)
        except ValueError:
            return Verdict(Outcome.FAIL, f"{seen} (not a number)", expected)
        if lo is not None and number < int(lo):
            ok = False
        if hi is not None and number > int(hi):
            ok = False
    return Verdict(Outcome.PASS if ok else Outcome.FAIL, seen, expected)


# --------------------------------------------------------------------------- PAM


class PamParams(Params):
    path: str = Field(pattern=r"^/etc/pam\.d/[\w.-]+$", description="The PAM service file.")
    type: str = Field(pattern=r"^(auth|account|password|session)$", description="The PAM management group.")
    module: str = Field(
        pattern=r"^pam_\w+\.so$", description="The module that must be on a line of that type."
    )
    control: str | None = Field(default=None, description="Required control (required, requisite …), if any.")
    args: list[str] = Field(
        default_factory=list, description="Arguments the line must carry (${policy} allowed)."
    )


def _pam_needs(p: PamParams, n: Needs) -> None:
    n.content.add(p.path)


@checker("pam", PamParams, _pam_needs)
def pam(p: PamParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """A PAM line: the module on a line of the given type, with the required control and arguments."""
    text = obs.get("content", {}).get(p.path)
    args = [resolve_pattern(a, ctx).replace("\\", "") for a in p.args]
    expected = f"{p.path}: {p.type} {p.control or '*'} {p.module} {' '.join(args)}".rstrip()
    if text is None:
        return Verdict(Outcome.FAIL, f"{p.path} is missing", expected)
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 3 or words[0].lstrip("-") != p.type:
            continue
        module = words[2].rsplit("/", 1)[-1]
        if words[1].startswith("["):  # [success=1 default=ignore] spans words
            closing = next((i for i, w in enumerate(words) if w.endswith("]")), 1)
            module = words[closing + 1].rsplit("/", 1)[-1] if closing + 1 < len(words) else ""
        if module != p.module:
            continue
        line = " ".join(words)
        if p.control and words[1] != p.control:
            return Verdict(Outcome.FAIL, f"{p.path}: {line}", expected)
        missing = [a for a in args if a not in words]
        if missing:
            return Verdict(Outcome.FAIL, f"{p.path}: {line} (lacks {', '.join(missing)})", expected)
        return Verdict(Outcome.PASS, f"{p.path}: {line}", expected)
    return Verdict(Outcome.FAIL, f"{p.path}: no {p.type} line with {p.module}", expected)


# --------------------------------------------------------------------------- SSH


class SshdParams(Params):
    option: str = Field(pattern=r"^[a-z0-9]+$", description="Option as `sshd -T` prints it (lower case).")
    equals: str | None = Field(default=None, description="Required value, as `sshd -T` prints it.")
    max: int | None = Field(default=None, description="Largest allowed number (first number of the value).")
    allowed: list[str] | None = Field(
        default=None, description="Every entry of the comma list must be one of these."
    )


def _sshd_needs(p: SshdParams, n: Needs) -> None:
    n.sshd = True


@checker("sshd", SshdParams, _sshd_needs)
def sshd(p: SshdParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """One effective sshd setting, as ``sshd -T`` reports it."""
    parts = []
    if p.equals is not None:
        parts.append(f"= {resolve(p.equals, ctx)}")
    if p.max is not None:
        parts.append(f"<= {p.max}")
    if p.allowed is not None:
        parts.append("only accepted algorithms")
    expected = f"sshd {p.option} {' '.join(parts)}"
    if obs.get("sshd_error"):
        return Verdict(Outcome.FAIL, f"sshd -T failed: {obs['sshd_error']}", expected)
    config = obs.get("sshd", {})
    value = config.get(p.option)
    equals = None if p.equals is None else str(resolve(p.equals, ctx))
    if value is None:
        return Verdict(Outcome.FAIL, f"sshd -T does not report {p.option}", expected)
    seen = f"{p.option} {value}"
    if equals is not None and value != equals:
        return Verdict(Outcome.FAIL, seen, expected)
    if p.max is not None:
        first = re.match(r"\d+", value)
        if first is None or int(first.group(0)) > p.max:
            return Verdict(Outcome.FAIL, seen, expected)
    if p.allowed is not None:
        extra = [a for a in value.split(",") if a not in p.allowed]
        if extra:
            return Verdict(Outcome.FAIL, f"{seen} (not accepted: {', '.join(extra)})", expected)
    return Verdict(Outcome.PASS, seen, expected)


# --------------------------------------------------------------------------- kernel


class SysctlParams(Params):
    key: str = Field(pattern=r"^[a-z0-9_.*-]+$", description="The kernel parameter.")
    value: str = Field(min_length=1, description="Required value.")


def _sysctl_needs(p: SysctlParams, n: Needs) -> None:
    n.sysctl.add(p.key)


def namespaced(key: str) -> bool:
    """Kernel parameters a network namespace has its own copy of (the lab applies these)."""
    return key.startswith("net.")


@checker("sysctl", SysctlParams, _sysctl_needs)
def sysctl(p: SysctlParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """A kernel parameter: set in /etc/sysctl.d for boot, and live (the lab: live only for net.*)."""
    expected = f"{p.key} = {p.value} (boot file and live)"
    configured = obs.get("sysctl_files", {}).get(p.key)
    live = obs.get("sysctl_live", {}).get(p.key)
    if configured != p.value:
        return Verdict(
            Outcome.FAIL,
            f"{p.key}: boot files say {configured if configured is not None else 'nothing'}, live {live}",
            expected,
        )
    if ctx.lab and not namespaced(p.key):
        return Verdict(
            Outcome.PASS,
            f"{p.key} = {configured} in /etc/sysctl.d; live value not judged "
            f"(lab: kernel-wide, shared with the machine: {live})",
            expected,
        )
    if live != p.value:
        return Verdict(Outcome.FAIL, f"{p.key}: boot file {configured}, live {live}", expected)
    return Verdict(Outcome.PASS, f"{p.key} = {live} (boot file and live)", expected)


class ModuleParams(Params):
    module: str = Field(pattern=r"^[a-z0-9_-]+$", description="Kernel module that must not load.")


def _module_needs(p: ModuleParams, n: Needs) -> None:
    n.modules.add(p.module)


@checker("module_off", ModuleParams, _module_needs)
def module_off(p: ModuleParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """A kernel module cannot load (``install MOD /bin/false`` and ``blacklist MOD``) and is not loaded."""
    name = p.module.replace("-", "_")
    expected = f"install {p.module} /bin/false; blacklist {p.module}; not loaded"
    modprobe = obs.get("modprobe", {})
    install = modprobe.get("install", {}).get(name)
    blacklisted = name in modprobe.get("blacklist", [])
    loaded = name in obs.get("loaded_modules", [])
    if install not in ("/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true") or not blacklisted:
        return Verdict(
            Outcome.FAIL,
            f"{p.module}: install {install or '(not set)'}, "
            f"{'blacklisted' if blacklisted else 'not blacklisted'}",
            expected,
        )
    if ctx.lab:
        return Verdict(
            Outcome.PASS,
            f"{p.module}: install {install}, blacklisted; loaded state not judged "
            "(lab: the machine's kernel)",
            expected,
        )
    if loaded:
        return Verdict(Outcome.FAIL, f"{p.module}: install {install}, blacklisted, but loaded", expected)
    return Verdict(Outcome.PASS, f"{p.module}: install {install}, blacklisted, not loaded", expected)


# --------------------------------------------------------------------------- accounts


class NoParams(Params):
    pass


class AccountsParams(Params):
    rule: str = Field(
        pattern=r"^(uid0_only_root|unique_uids|shadowed|groups_exist|logins_in_model|homes)$",
        description="uid0_only_root, unique_uids, shadowed, groups_exist, logins_in_model or homes.",
    )
    service_accounts: list[str] = Field(
        default_factory=list,
        description="System accounts that keep their package's shell but never log in (no password, no key).",
    )


def _accounts_needs(p: AccountsParams, n: Needs) -> None:
    n.accounts = True


@checker("accounts", AccountsParams, _accounts_needs)
def accounts(p: AccountsParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """The local accounts: only root has UID 0; UIDs unique; passwords in shadow; primary groups exist."""
    passwd: list[list[str]] = obs.get("passwd", [])
    if not passwd:
        return Verdict(Outcome.FAIL, "/etc/passwd could not be read", p.rule)
    if p.rule == "uid0_only_root":
        zero = [e[0] for e in passwd if e[2] == "0"]
        ok = zero == ["root"]
        return Verdict(Outcome.PASS if ok else Outcome.FAIL, "UID 0: " + ", ".join(zero), "UID 0: root")
    if p.rule == "unique_uids":
        seen: dict[str, list[str]] = {}
        for e in passwd:
            seen.setdefault(e[2], []).append(e[0])
        twice = {uid: names for uid, names in seen.items() if len(names) > 1}
        if twice:
            return Verdict(
                Outcome.FAIL,
                "; ".join(f"UID {u}: {', '.join(n)}" for u, n in sorted(twice.items())),
                "every UID once",
            )
        return Verdict(Outcome.PASS, f"{len(passwd)} accounts, every UID once", "every UID once")
    if p.rule == "shadowed":
        open_ = [e[0] for e in passwd if e[1] != "x"]
        if open_:
            return Verdict(
                Outcome.FAIL, "password field not 'x': " + ", ".join(open_), "every password in /etc/shadow"
            )
        return Verdict(
            Outcome.PASS, f"{len(passwd)} accounts, every password field 'x'", "every password in /etc/shadow"
        )
    if p.rule == "logins_in_model":
        allowed = {"root", *resolve("$admins", ctx), *p.service_accounts}
        shells = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync")
        logins = [e[0] for e in passwd if e[6] not in shells]
        extra = [name for name in logins if name not in allowed]
        expected = "logins only for root and the model's administrators"
        if extra:
            return Verdict(Outcome.FAIL, "login shell but not in the model: " + ", ".join(extra), expected)
        return Verdict(Outcome.PASS, "logins: " + ", ".join(logins), expected)
    if p.rule == "homes":
        expected = "each login's home exists, is its own and is not writable by group or others"
        homes: dict[str, dict[str, Any]] = obs.get("homes", {})
        bad = []
        for name, st in sorted(homes.items()):
            if not st.get("exists"):
                bad.append(f"{name}: {st.get('path')} missing")
            elif st.get("owner") != name or _mode(st["mode"]) & 0o022:
                bad.append(f"{name}: {st.get('path')} {st.get('owner')} {st['mode']}")
        if bad:
            return Verdict(Outcome.FAIL, "; ".join(bad), expected)
        return Verdict(Outcome.PASS, f"{len(homes)} homes checked", expected)
    gids = set(obs.get("group_gids", []))
    orphans = [f"{e[0]} (GID {e[3]})" for e in passwd if e[3] not in gids]
    if orphans:
        return Verdict(
            Outcome.FAIL, "primary group missing: " + ", ".join(orphans), "every primary group exists"
        )
    return Verdict(
        Outcome.PASS, f"{len(passwd)} accounts, every primary group exists", "every primary group exists"
    )


class GroupParams(Params):
    group: str = Field(min_length=1, description="The group (or $policy-name) that must exist.")
    members_from: str | None = Field(
        default=None, description="$policy-name listing the only members allowed."
    )


def _group_needs(p: GroupParams, n: Needs) -> None:
    n.accounts = True


@checker("group", GroupParams, _group_needs)
def group(p: GroupParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """A group exists, and (with ``members_from``) holds no one but the allowed members."""
    name = str(resolve(p.group, ctx))
    members: dict[str, list[str]] = obs.get("group_members", {})
    if name not in members:
        return Verdict(Outcome.FAIL, f"group {name} does not exist", f"group {name} exists")
    found = sorted(members[name])
    if p.members_from is not None:
        allowed = set(resolve(p.members_from, ctx))
        extra = [m for m in found if m not in allowed]
        expected = f"group {name}: only {', '.join(sorted(allowed)) or 'nobody'}"
        if extra:
            return Verdict(
                Outcome.FAIL, f"group {name}: {', '.join(found)} (not allowed: {', '.join(extra)})", expected
            )
        return Verdict(Outcome.PASS, f"group {name}: {', '.join(found) or 'no members'}", expected)
    return Verdict(Outcome.PASS, f"group {name}: {', '.join(found) or 'no members'}", f"group {name} exists")


# --------------------------------------------------------------------------- scans


class ScanParams(Params):
    rule: str = Field(
        pattern=r"^(world_writable|unowned|dev_regular)$",
        description="world_writable, unowned or dev_regular.",
    )


def _scan_needs(p: ScanParams, n: Needs) -> None:
    n.scan = True


@checker("scan", ScanParams, _scan_needs)
def scan(p: ScanParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """A walk of the root file system: nothing world-writable outside sticky directories, nothing unowned."""
    key = p.rule
    expected = {
        "world_writable": "no world-writable file; every world-writable directory sticky",
        "unowned": "every file has an existing owner and group",
        "dev_regular": "no regular file in /dev",
    }[p.rule]
    if "scan_error" in obs:
        return Verdict(Outcome.FAIL, f"scan failed: {obs['scan_error']}", expected)
    found: list[str] = obs.get(key, [])
    if found:
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        return Verdict(Outcome.FAIL, ", ".join(found[:10]) + more, expected)
    return Verdict(Outcome.PASS, f"none in {obs.get('scanned', 0)} files", expected)


class SuidParams(Params):
    allowed: list[str] = Field(description="The reviewed setuid/setgid programs.")


def _suid_needs(p: SuidParams, n: Needs) -> None:
    n.scan = True


@checker("suid", SuidParams, _suid_needs)
def suid(p: SuidParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """No setuid or setgid program beyond the reviewed list."""
    expected = f"setuid/setgid programs within the {len(p.allowed)} reviewed"
    if "scan_error" in obs:
        return Verdict(Outcome.FAIL, f"scan failed: {obs['scan_error']}", expected)
    found: list[str] = obs.get("suid", [])
    extra = [path for path in found if path not in p.allowed]
    if extra:
        return Verdict(Outcome.FAIL, "not reviewed: " + ", ".join(extra[:10]), expected)
    return Verdict(Outcome.PASS, f"{len(found)} setuid/setgid programs, all reviewed", expected)


# --------------------------------------------------------------------------- packages


class PackagesParams(Params):
    absent: list[str] = Field(default_factory=list, description="Packages that must not be installed.")
    present: list[str] = Field(default_factory=list, description="Packages that must be installed.")


def _packages_needs(p: PackagesParams, n: Needs) -> None:
    n.packages.update(p.absent)
    n.packages.update(p.present)


@checker("packages", PackagesParams, _packages_needs)
def packages(p: PackagesParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """Installed packages: the service packages a control forbids are absent, the ones it needs present."""
    installed = set(obs.get("packages", []))
    bad = sorted(set(p.absent) & installed)
    missing = sorted(set(p.present) - installed)
    expected = ", ".join(
        filter(
            None,
            [
                f"installed: {', '.join(p.present)}" if p.present else "",
                f"not installed: {', '.join(p.absent)}" if p.absent else "",
            ],
        )
    )
    if bad or missing:
        seen = "; ".join(
            filter(
                None,
                [
                    f"installed: {', '.join(bad)}" if bad else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                ],
            )
        )
        return Verdict(Outcome.FAIL, seen, expected)
    seen = "; ".join(
        filter(
            None,
            [
                f"installed: {', '.join(p.present)}" if p.present else "",
                f"none of {', '.join(p.absent)}" if p.absent else "",
            ],
        )
    )
    return Verdict(Outcome.PASS, seen, expected)


# --------------------------------------------------------------------------- AIDE, nftables


def _aide_needs(p: NoParams, n: Needs) -> None:
    n.aide = True


@checker("aide", NoParams, _aide_needs)
def aide(p: NoParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """AIDE has a baseline and a check against it finds no added, removed or changed file."""
    expected = "AIDE baseline present; the check finds no change"
    found = obs.get("aide")
    if not found:
        return Verdict(Outcome.FAIL, "AIDE was not checked", expected)
    if not found.get("database"):
        return Verdict(Outcome.FAIL, "no AIDE baseline database", expected)
    if found.get("error"):
        return Verdict(Outcome.FAIL, f"aide --check failed: {found['error']}", expected)
    changes: list[str] = found.get("changes", [])
    if changes:
        more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
        return Verdict(
            Outcome.FAIL, "changed since the baseline: " + ", ".join(changes[:10]) + more, expected
        )
    return Verdict(Outcome.PASS, f"baseline of {found.get('database_time', '?')}; no change", expected)


def _nft_needs(p: NoParams, n: Needs) -> None:
    n.nft = True


@checker("nft_table", NoParams, _nft_needs)
def nft_table(p: NoParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """The host firewall's table (``inet dualdc``, from the model's flows) is loaded, input dropped."""
    expected = "table inet dualdc loaded, input policy drop"
    text = obs.get("nft")
    if not text:
        return Verdict(Outcome.FAIL, "table inet dualdc is not loaded", expected)
    if re.search(r"hook input priority \S+; policy drop;", text):
        return Verdict(Outcome.PASS, "table inet dualdc loaded, input policy drop", expected)
    return Verdict(Outcome.FAIL, "table inet dualdc loaded, but input is not dropped by default", expected)


def _acct_needs(p: NoParams, n: Needs) -> None:
    n.acct = True


@checker("acct", NoParams, _acct_needs)
def acct(p: NoParams, obs: dict[str, Any], ctx: Context) -> Verdict:
    """Process accounting is on: its file grows when a process ends."""
    expected = "/var/log/account/pacct grows when a process ends"
    found = obs.get("acct") or {}
    if not found.get("file"):
        return Verdict(Outcome.FAIL, "/var/log/account/pacct is missing", expected)
    size = found.get("size")
    if not found.get("active"):
        return Verdict(Outcome.FAIL, f"/var/log/account/pacct ({size} bytes) did not grow: accounting is off",
                       expected)
    return Verdict(Outcome.PASS, f"accounting on (/var/log/account/pacct, {size} bytes)", expected)
