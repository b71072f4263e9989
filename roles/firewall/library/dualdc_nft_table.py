#!/usr/bin/python
# -*- coding: utf-8 -*-
# Part of dualdc (JB Financial Group). Runs on the managed host with its Python 3.

from __future__ import annotations

DOCUMENTATION = r"""
module: dualdc_nft_table
short_description: Make one live nftables table equal to a ruleset, atomically
description:
  - Lists the desired table the way nft lists it, by loading I(content) into a throwaway
    network namespace (C(unshare --net)), and compares it with the live table
    (C(nft -s list table)). Counters and other state are left out of both listings.
  - When they differ it loads I(content) with C(nft -f) in one transaction (the ruleset
    must replace the table itself, e.g. C(table ...{} / delete table ... / table ... {...}))
    and checks the live table now equals the desired one.
  - In check mode it reports the difference as a diff (live before, model after) and
    changes nothing.
  - With I(ssh_guard), it refuses to change the table when the SSH connection the module
    runs over comes from an address outside I(ssh_sources), since the new ruleset would
    lock that client out.
options:
  content:
    description: The ruleset to load, as nft -f reads it.
    type: str
    required: true
  family:
    description: Address family of the table.
    type: str
    default: inet
  table:
    description: Name of the table the ruleset defines.
    type: str
    required: true
  ssh_guard:
    description: Refuse to apply when the SSH client Ansible connects from is outside I(ssh_sources).
    type: bool
    default: true
  ssh_sources:
    description: The only networks the ruleset lets SSH come from.
    type: list
    elements: str
    default: []
  ssh_accepted:
    description:
      - Networks the ruleset accepts SSH from, within I(ssh_sources) (e.g. the sources of the
        declared SSH flows). Omitted, every network of I(ssh_sources) counts as accepted.
    type: list
    elements: str
  ssh_port:
    description: Port the ruleset accepts SSH on.
    type: int
    default: 22
author: JB Financial Group platform engineering
"""

EXAMPLES = r"""
- name: Apply the host's table atomically
  dualdc_nft_table:
    content: "{{ lookup('ansible.builtin.template', 'table.nft.j2') }}"
    table: dualdc
    ssh_sources: [10.10.10.0/24]
"""

RETURN = r"""
live:
  description: The live table as nft lists it after the run (empty when absent).
  type: str
  returned: always
ssh_client:
  description: Address the SSH connection comes from, when there is one.
  type: str
  returned: always
"""

import ipaddress
import os

from ansible.module_utils.basic import AnsibleModule

NFT = "nft"


def list_live(module, family, table):
    """The live table as nft lists it (stateless), or '' when there is none."""
    rc, out, err = module.run_command([module.get_bin_path(NFT, required=True), "-s", "list", "table",
                                       family, table])
    if rc != 0:
        if "No such file or directory" in err or "does not exist" in err:
            return ""
        module.fail_json(msg="cannot list the live table %s %s: %s" % (family, table, err.strip()))
    return out


def list_desired(module, content, family, table):
    """The desired table as nft lists it, from a throwaway network namespace."""
    unshare = module.get_bin_path("unshare", required=True)
    nft = module.get_bin_path(NFT, required=True)
    script = '"$1" -f /dev/stdin && "$1" -s list table "$2" "$3"'
    rc, out, err = module.run_command([unshare, "--net", "--", "/bin/sh", "-c", script, "sh", nft, family, table],
                                      data=content, binary_data=True)
    if rc != 0:
        module.fail_json(msg="the ruleset does not load in a scratch network namespace: %s" % err.strip())
    return out


def ssh_client():
    """(client address, server port) of the SSH connection this module runs over, if any."""
    conn = os.environ.get("SSH_CONNECTION", "").split()
    if len(conn) == 4:
        return conn[0], int(conn[3])
    client = os.environ.get("SSH_CLIENT", "").split()
    if len(client) == 3:
        return client[0], None
    return None, None


def guard(module, sources, accepted, port):
    """Fail before applying when the SSH client would be locked out."""
    client, server_port = ssh_client()
    if client is None:
        return None
    try:
        address = ipaddress.ip_address(client)
        networks = [ipaddress.ip_network(s, strict=False) for s in sources]
        accepting = networks if accepted is None else [ipaddress.ip_network(s, strict=False) for s in accepted]
    except ValueError as exc:
        module.fail_json(msg="cannot check the SSH guard: %s" % exc)
    inside = any(address in net for net in networks) and any(address in net for net in accepting)
    if inside and (server_port is None or server_port == port):
        return client
    allowed = ", ".join(sorted(set(accepted if accepted is not None else sources))) or "nowhere"
    within = "" if accepted is None else " (and only within %s)" % (", ".join(sources) or "nothing")
    module.fail_json(
        msg=("refusing to apply the firewall: Ansible connects from %s to port %s, and the new ruleset "
             "accepts SSH only on port %d from %s%s; applying it would lock this connection out. "
             "Connect from a management segment or a bastion, or fix the model's SSH sources."
             % (client, server_port if server_port is not None else "?", port, allowed, within)),
        ssh_client=client)
    return client


def main():
    module = AnsibleModule(
        argument_spec=dict(
            content=dict(type="str", required=True),
            family=dict(type="str", default="inet"),
            table=dict(type="str", required=True),
            ssh_guard=dict(type="bool", default=True),
            ssh_sources=dict(type="list", elements="str", default=[]),
            ssh_accepted=dict(type="list", elements="str"),
            ssh_port=dict(type="int", default=22),
        ),
        supports_check_mode=True,
    )
    params = module.params
    family, table = params["family"], params["table"]
    desired = list_desired(module, params["content"], family, table)
    live = list_live(module, family, table)
    client = ssh_client()[0]
    if live == desired:
        module.exit_json(changed=False, live=live, ssh_client=client)

    header = "nft table %s %s" % (family, table)
    diff = {"before_header": "%s (live)" % header, "after_header": "%s (model)" % header,
            "before": live, "after": desired}
    if params["ssh_guard"]:
        guard(module, params["ssh_sources"], params["ssh_accepted"], params["ssh_port"])
    if module.check_mode:
        module.exit_json(changed=True, diff=diff, live=live, ssh_client=client)

    nft = module.get_bin_path(NFT, required=True)
    rc, _out, err = module.run_command([nft, "-f", "/dev/stdin"], data=params["content"], binary_data=True)
    if rc != 0:
        module.fail_json(msg="nft could not load the ruleset (nothing changed): %s" % err.strip(), diff=diff)
    now = list_live(module, family, table)
    if now != desired:
        module.fail_json(msg="the live table differs from the ruleset just loaded", live=now, diff=diff)
    module.exit_json(changed=True, diff=diff, live=now, ssh_client=client)


if __name__ == "__main__":
    main()
