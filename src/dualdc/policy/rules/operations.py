"""Operational rules: NTP-01, LOG-01, PW-01."""

from __future__ import annotations

from collections.abc import Iterator

from dualdc.flows import inbound_to_host
from dualdc.model import Host, HostRole, Protocol, Severity, Topology
from dualdc.policy.engine import Context, Finding, Param, ParamValue, rule

ERROR = Severity.ERROR


def _protocol_check(params: dict[str, ParamValue]) -> dict[str, str]:
    bad = {}
    if params["protocol"] not in {p.value for p in Protocol}:
        bad["protocol"] = f"expected tcp or udp, found {params['protocol']!r}"
    if not 1 <= int(params["port"]) <= 65535:
        bad["port"] = f"expected a port number, found {params['port']!r}"
    return bad


class Reach:
    """Which hosts declared flows let open ``protocol/port`` connections to a host."""

    def __init__(self, topology: Topology, host: Host, protocol: str, port: int) -> None:
        self.segments: set[str] = set()
        self.hosts: set[str] = set()
        self.everyone = False
        for conn in inbound_to_host(topology, host):
            if conn.flow.protocol.value != protocol or (conn.ports and port not in conn.ports):
                continue
            src = conn.source
            if src.host is not None:
                self.hosts.add(src.host)
            elif src.segment is not None:
                self.segments.add(src.segment)
            else:
                self.everyone = True

    def allows(self, host: Host) -> bool:
        return (
            self.everyone
            or host.name in self.hosts
            or any(i.segment in self.segments for i in host.interfaces)
        )


@rule(
    "NTP-01",
    title="All hosts sync to the same internal time sources",
    severity=ERROR,
    source="log integrity (전자금융감독규정 제18조 audit trails need one clock)",
    params={
        "min_sources": Param(2, "Fewest time sources in the environment."),
        "every_site": Param(True, "Every site has a time source, so losing one site keeps the clock."),
        "check_flows": Param(True, "Every host has a declared flow to every time source."),
        "protocol": Param("udp", "Protocol of the time service."),
        "port": Param(123, "Port of the time service."),
    },
    param_check=_protocol_check,
    edition="감독규정 2025-02-05",
    verified=False,
    pci_dss="10.6",
)
def ntp01(ctx: Context) -> Iterator[Finding]:
    """All hosts sync to the same internal time sources.

    The environment's ``time_sources`` are hosts of role ``ntp``, at least
    ``min_sources`` of them, and (``every_site``) at least one at every site. No host
    overrides them with its own list. With ``check_flows``, every host other than the
    sources themselves can reach every source over declared flows on ``protocol/port``
    (udp/123): a source nobody may reach is no source.
    """
    topo = ctx.topology
    env = topo.environment
    target = f"environment:{env.name}"
    sources = [topo.host(n) for n in env.time_sources]
    not_ntp = [h.name for h in sources if h.role is not HostRole.NTP]
    if not_ntp:
        yield ctx.finding(target, f"time sources {', '.join(not_ntp)} are not ntp hosts", env, "time_sources")
    if len(set(env.time_sources)) < ctx.get_int("min_sources"):
        yield ctx.finding(
            target,
            f"{len(set(env.time_sources))} time source(s) declared; at least "
            f"{ctx.get_int('min_sources')} are required",
            env,
            "time_sources",
        )
    if ctx.get_bool("every_site"):
        have = {h.site for h in sources}
        for site in topo.sites:
            if site.name not in have and topo.hosts_at(site.name):
                yield ctx.finding(
                    target,
                    f"no time source is at {site.name}; losing the other site would leave "
                    "its hosts without time",
                    env,
                    "time_sources",
                )
    wanted = set(env.time_sources)
    for host in topo.hosts:
        if host.time_sources is not None and set(host.time_sources) != wanted:
            yield ctx.finding(
                f"host:{host.name}",
                f"{host.name} syncs to {', '.join(host.time_sources)} instead of "
                f"the environment's time sources ({', '.join(env.time_sources)})",
                host,
                "time_sources",
            )
    if not ctx.get_bool("check_flows"):
        return
    reach = {h.name: Reach(topo, h, ctx.get_str("protocol"), ctx.get_int("port")) for h in sources}
    for host in topo.hosts:
        if host.name in wanted:
            continue
        missing = [name for name in sorted(reach) if not reach[name].allows(host)]
        if missing:
            yield ctx.finding(
                f"host:{host.name}",
                f"no declared flow lets {host.name} reach time source(s) "
                f"{', '.join(missing)} on {ctx.get_str('protocol')}/{ctx.get_int('port')}",
                host,
            )


@rule(
    "LOG-01",
    title="Access logs are kept at least 1 year, personal-data access logs at least 2 years",
    severity=ERROR,
    source="전자금융감독규정 제18조; 개인정보의 안전성 확보조치 기준 제8조",
    params={
        "access_log_days": Param(365, "Shortest retention of access logs."),
        "personal_data_log_days": Param(730, "Shortest retention of personal-data access logs."),
        "check_flows": Param(True, "Every host has a declared flow to a log host at its site."),
        "protocol": Param("tcp", "Protocol logs are forwarded over."),
        "port": Param(6514, "Port logs are forwarded to (syslog over TLS)."),
    },
    param_check=_protocol_check,
    edition="감독규정 2025-02-05; 개인정보의 안전성 확보조치 기준 2023-09-22",
    verified=False,
    dora="Art. 10",
    pci_dss="10.5.1",
)
def log01(ctx: Context) -> Iterator[Finding]:
    """Access logs are kept at least 1 year; personal-data access logs at least 2 years.

    The environment's ``log_retention`` meets ``access_log_days`` and
    ``personal_data_log_days``. Logs must also be kept somewhere: every site with hosts has
    a ``log`` host, and (``check_flows``) every other host can forward to one at its site
    over declared flows on ``protocol/port``.
    """
    topo = ctx.topology
    env = topo.environment
    target = f"environment:{env.name}"
    kept = env.log_retention
    if kept.access_log_days < ctx.get_int("access_log_days"):
        yield ctx.finding(
            target,
            f"access logs are kept {kept.access_log_days} days; at least "
            f"{ctx.get_int('access_log_days')} are required",
            kept,
            "access_log_days",
        )
    if kept.personal_data_log_days < ctx.get_int("personal_data_log_days"):
        yield ctx.finding(
            target,
            f"personal-data access logs are kept {kept.personal_data_log_days} days; at least "
            f"{ctx.get_int('personal_data_log_days')} are required",
            kept,
            "personal_data_log_days",
        )
    log_hosts: dict[str, list[Host]] = {}
    for host in topo.hosts:
        if host.role is HostRole.LOG:
            log_hosts.setdefault(host.site, []).append(host)
    for site in topo.sites:
        if site.name not in log_hosts and topo.hosts_at(site.name):
            yield ctx.finding(
                f"site:{site.name}", f"{site.name} has hosts but no log host to keep their logs", site
            )
    if not ctx.get_bool("check_flows"):
        return
    reach = {
        site: [Reach(topo, h, ctx.get_str("protocol"), ctx.get_int("port")) for h in hosts]
        for site, hosts in log_hosts.items()
    }
    for host in topo.hosts:
        if host.role is HostRole.LOG or host.site not in reach:
            continue
        if not any(r.allows(host) for r in reach[host.site]):
            names = ", ".join(h.name for h in log_hosts[host.site])
            yield ctx.finding(
                f"host:{host.name}",
                f"no declared flow lets {host.name} forward its logs to a log host "
                f"at {host.site} ({names}) on {ctx.get_str('protocol')}/{ctx.get_int('port')}",
                host,
            )


@rule(
    "PW-01",
    title="Accounts lock after at most 5 failures; idle sessions time out",
    severity=ERROR,
    source="전자금융감독규정 제32조",
    params={
        "max_attempts": Param(5, "Most failed logins before an account locks."),
        "max_idle_seconds": Param(600, "Longest idle session before it is closed."),
        "min_lockout_seconds": Param(300, "Shortest lockout, unless accounts stay locked until reset (0)."),
    },
    edition="감독규정 2025-02-05",
    verified=False,
    pci_dss="8.3.4; 8.2.8",
)
def pw01(ctx: Context) -> Iterator[Finding]:
    """Accounts lock after at most 5 failed logins, and idle sessions time out.

    The environment's ``access`` settings, which the hosts' PAM (faillock) and shell
    configuration apply: ``lockout_attempts`` is at most ``max_attempts``; a lockout lasts
    at least ``min_lockout_seconds`` or until an administrator resets it (0);
    ``idle_timeout_seconds`` is set (not 0) and at most ``max_idle_seconds``. The 5-failure
    figure follows 전자금융감독규정 제32조 as commonly applied; verify it against the current
    text before relying on it.
    """
    env = ctx.topology.environment
    access = env.access
    target = f"environment:{env.name}"
    if access.lockout_attempts > ctx.get_int("max_attempts"):
        yield ctx.finding(
            target,
            f"accounts lock after {access.lockout_attempts} failed logins; at most "
            f"{ctx.get_int('max_attempts')} are allowed",
            access,
            "lockout_attempts",
        )
    if 0 < access.lockout_seconds < ctx.get_int("min_lockout_seconds"):
        yield ctx.finding(
            target,
            f"a locked account unlocks after {access.lockout_seconds} s; at least "
            f"{ctx.get_int('min_lockout_seconds')} s (or 0: until reset) is required",
            access,
            "lockout_seconds",
        )
    if access.idle_timeout_seconds == 0:
        yield ctx.finding(
            target, "idle sessions never time out; set idle_timeout_seconds", access, "idle_timeout_seconds"
        )
    elif access.idle_timeout_seconds > ctx.get_int("max_idle_seconds"):
        yield ctx.finding(
            target,
            f"idle sessions time out after {access.idle_timeout_seconds} s; at most "
            f"{ctx.get_int('max_idle_seconds')} s is allowed",
            access,
            "idle_timeout_seconds",
        )
