"""What ``invoke compliance`` observes on a host: one read-only Python program sent over SSH.

:data:`SCRIPT` runs on the host (``python3 -``, Debian's python3, nothing installed) with the
controller's :class:`~dualdc.compliance.checks.Needs` as its argument and prints one JSON
object of observations. It reads only what the catalogue's checks name (file modes, the
configuration files listed, ``sshd -T``, kernel parameters, ``/etc/passwd`` and
``/etc/group``); it never reads ``/etc/shadow``'s content, and changes nothing: AIDE runs
with ``--check`` against the baseline, the file walk only stats.
"""

from __future__ import annotations

SCRIPT = r"""
import grp, json, os, pwd, re, stat, subprocess, sys
needs = json.loads(sys.argv[1])
out = {}
MAX_CONTENT = 262144
SKIP = ("/proc", "/sys", "/dev", "/run", "/tmp/.dualdc", "/var/lib/aide")

def owner(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)

def group(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)

def stat_of(path):
    try:
        st = os.lstat(path)
    except OSError:
        return {"exists": False}
    return {"exists": True, "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            "owner": owner(st.st_uid), "group": group(st.st_gid)}

def run(argv, timeout=120):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)

out["stat"] = {p: stat_of(p) for p in needs["stat"]}
content = {}
for path in needs["content"]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            content[path] = fh.read(MAX_CONTENT)
    except OSError:
        pass
out["content"] = content

if needs["sshd"]:
    code, text, err = run(["/usr/sbin/sshd", "-T", "-C", "user=root,host=localhost,addr=127.0.0.1"])
    if code != 0:
        out["sshd_error"] = (err or text).strip()[-300:]
    cfg = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        cfg[key] = value if key not in cfg else cfg[key] + " " + value
    out["sshd"] = cfg

if needs["sysctl"]:
    files = {}
    sources = ["/etc/sysctl.conf"]
    for d in ("/usr/lib/sysctl.d", "/etc/sysctl.d"):
        try:
            sources += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".conf")]
        except OSError:
            pass
    # systemd-sysctl order: by file name across the directories, /etc winning a tie
    order = lambda p: (os.path.basename(p), p.startswith("/etc"))
    sources = ["/etc/sysctl.conf"] + sorted(sources[1:], key=order)
    for path in sources:
        try:
            with open(path) as fh:
                for line in fh:
                    line = line.split("#", 1)[0].split(";", 1)[0].strip()
                    if "=" in line:
                        key, _, value = line.partition("=")
                        files[key.strip().lstrip("-").replace("/", ".")] = " ".join(value.split())
        except OSError:
            pass
    live = {}
    for key in needs["sysctl"]:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as fh:
                live[key] = " ".join(fh.read().split())
        except OSError:
            live[key] = None
    out["sysctl_files"] = {k: files.get(k) for k in needs["sysctl"]}
    out["sysctl_live"] = live

if needs["modules"]:
    install, blacklist = {}, []
    for d in ("/etc/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if not n.endswith(".conf"):
                continue
            try:
                with open(os.path.join(d, n)) as fh:
                    for line in fh:
                        words = line.split("#", 1)[0].split()
                        if len(words) >= 3 and words[0] == "install":
                            install.setdefault(words[1].replace("-", "_"), " ".join(words[2:]))
                        elif len(words) == 2 and words[0] == "blacklist":
                            blacklist.append(words[1].replace("-", "_"))
            except OSError:
                pass
    out["modprobe"] = {"install": install, "blacklist": blacklist}
    try:
        with open("/proc/modules") as fh:
            out["loaded_modules"] = [line.split()[0] for line in fh]
    except OSError:
        out["loaded_modules"] = []

if needs["packages"]:
    query = ["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Status}\n"]
    code, text, _ = run(query + needs["packages"])
    out["packages"] = [l.split()[0] for l in text.splitlines() if l.endswith(" installed")]

if needs["accounts"] or needs["home_files"]:
    passwd = []
    with open("/etc/passwd") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(":")
            if len(parts) == 7:
                passwd.append(parts)
    out["passwd"] = passwd
    members, gids = {}, []
    with open("/etc/group") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(":")
            if len(parts) == 4:
                members[parts[0]] = [m for m in parts[3].split(",") if m]
                gids.append(parts[2])
    out["group_members"] = members
    out["group_gids"] = gids
    shells = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync")
    homes = {}
    for e in passwd:
        if e[6] not in shells and e[0] != "root":
            st = stat_of(e[5])
            st["path"] = e[5]
            homes[e[0]] = st
    out["homes"] = homes
    found = []
    for e in passwd:
        for name in needs["home_files"]:
            if e[5] and e[5] != "/" and os.path.lexists(os.path.join(e[5], name)):
                found.append(os.path.join(e[5], name))
    out["home_files"] = sorted(set(found))

if needs["scan"]:
    ww, unowned, suid, scanned = [], [], [], 0
    uids = {p.pw_uid for p in pwd.getpwall()}
    gids_ = {g.gr_gid for g in grp.getgrall()}
    root_dev = os.lstat("/").st_dev
    for top, dirs, files in os.walk("/"):
        keep = []
        for d in dirs:
            path = os.path.join(top, d)
            if path in SKIP:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_dev != root_dev or stat.S_ISLNK(st.st_mode):
                continue
            scanned += 1
            mode = st.st_mode
            if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                ww.append(path + "/")
            if st.st_uid not in uids or st.st_gid not in gids_:
                unowned.append(path + "/")
            keep.append(d)
        dirs[:] = keep
        for f in files:
            path = os.path.join(top, f)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            scanned += 1
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & stat.S_IWOTH and stat.S_ISREG(st.st_mode):
                ww.append(path)
            if st.st_uid not in uids or st.st_gid not in gids_:
                unowned.append(path)
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                suid.append(path)
    dev_regular = []
    for top, dirs, files in os.walk("/dev"):
        dirs[:] = [d for d in dirs if d not in ("shm", "mqueue", "pts", "hugepages")]
        for f in files:
            path = os.path.join(top, f)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    dev_regular.append(path)
            except OSError:
                pass
    out.update(world_writable=sorted(ww), unowned=sorted(unowned), suid=sorted(suid),
               dev_regular=sorted(dev_regular), scanned=scanned)

if needs["aide"]:
    conf = "/etc/aide/dualdc.conf"
    db = "/var/lib/aide/dualdc.db"
    aide = {"database": os.path.exists(db) and os.path.exists(conf)}
    if aide["database"]:
        aide["database_time"] = int(os.stat(db).st_mtime)
        code, text, err = run(["aide", "--check", "--config", conf], timeout=600)
        if code >= 14:
            aide["error"] = (err or text).strip()[-300:]
        changes = []
        section = None
        for line in text.splitlines():
            head = re.match(r"^(Added|Removed|Changed) entries:", line)
            if head:
                section = head.group(1).lower()
                continue
            if line.startswith("Detailed information"):
                section = None
            m = re.match(r"^([fdlcbps!=?])[^:]*: (/.*)$", line)
            if section and m:
                changes.append(section + ": " + m.group(2))
        aide["changes"] = changes
        aide["exit"] = code
    out["aide"] = aide

if needs["acct"]:
    pacct = "/var/log/account/pacct"
    try:
        before = os.stat(pacct).st_size
        run(["/bin/true"])
        after = os.stat(pacct).st_size
        out["acct"] = {"file": True, "active": after > before, "size": after}
    except OSError:
        out["acct"] = {"file": False, "active": False}

if needs["nft"]:
    code, text, _ = run(["nft", "list", "table", "inet", "dualdc"])
    out["nft"] = text if code == 0 else ""

json.dump(out, sys.stdout)
"""
