#!/usr/bin/python
# -*- coding: utf-8 -*-
# Part of dualdc (JB Financial Group). Runs on the managed host with its Python 3.

from __future__ import annotations

DOCUMENTATION = r"""
module: dualdc_aide
short_description: Keep an AIDE baseline of the converged host, and report changes since it
description:
  - Without a baseline database, builds one (C(aide --init)).
  - With one, compares the host with it (C(aide --check)). In check mode the changes are the
    result (changed, with a diff of one line per added, removed or changed file) and nothing is
    written; otherwise the baseline is updated to the host as it now is (C(aide --update)),
    because a converge is the approval of the host's state.
options:
  config:
    description: AIDE configuration file.
    type: path
    required: true
  database:
    description: The baseline database (the configuration's database_in).
    type: path
    required: true
author: JB Financial Group platform engineering
"""

EXAMPLES = r"""
- name: Compare the files with the AIDE baseline
  dualdc_aide:
    config: /etc/aide/dualdc.conf
    database: /var/lib/aide/dualdc.db
"""

RETURN = r"""
changes:
  description: Each difference from the baseline, as C(added|removed|changed /path).
  type: list
  elements: str
  returned: always
initialised:
  description: Whether a new baseline was built.
  type: bool
  returned: always
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

_SECTION = re.compile(r"^(Added|Removed|Changed) entries:")
_ENTRY = re.compile(r"^[fdlcbps!=?][^:]*: (/.*)$")


def parse(text):
    """The added, removed and changed paths of an AIDE report (its summary sections)."""
    changes = []
    section = None
    for line in text.splitlines():
        head = _SECTION.match(line)
        if head:
            section = head.group(1).lower()
            continue
        if line.startswith("Detailed information"):
            section = None
        entry = _ENTRY.match(line)
        if section and entry:
            item = f"{section} {entry.group(1)}"
            if item not in changes:
                changes.append(item)
    return changes


def main():
    module = AnsibleModule(
        argument_spec={"config": {"type": "path", "required": True},
                       "database": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    config, database = module.params["config"], module.params["database"]
    aide = module.get_bin_path("aide", required=True)
    if not os.path.exists(database):
        if module.check_mode:
            module.exit_json(changed=True, changes=[], initialised=False,
                             msg="no AIDE baseline yet: a converge builds it",
                             diff={"before_header": database, "after_header": database,
                                   "before": "", "after": "(a new AIDE baseline)\n"})
        rc, out, err = module.run_command([aide, "--init", "--config", config])
        if rc != 0 or not os.path.exists(database + ".new"):
            module.fail_json(msg=f"aide --init failed ({rc}): {(err or out).strip()[-500:]}")
        os.replace(database + ".new", database)
        os.chmod(database, 0o600)
        module.exit_json(changed=True, changes=[], initialised=True, msg="AIDE baseline built")
    rc, out, err = module.run_command([aide, "--check", "--config", config])
    if rc >= 14:
        module.fail_json(msg=f"aide --check failed ({rc}): {(err or out).strip()[-500:]}")
    changes = parse(out)
    if rc == 0 or not changes:
        module.exit_json(changed=False, changes=[], initialised=False, msg="no change since the AIDE baseline")
    diff = {"before_header": f"AIDE baseline {database}", "after_header": "the host now",
            "before": "", "after": "".join(f"{c}\n" for c in changes)}
    if module.check_mode:
        module.exit_json(changed=True, changes=changes, initialised=False, diff=diff,
                         msg=f"{len(changes)} change(s) since the AIDE baseline")
    rc, out, err = module.run_command([aide, "--update", "--config", config])
    if rc >= 14 or not os.path.exists(database + ".new"):
        module.fail_json(msg=f"aide --update failed ({rc}): {(err or out).strip()[-500:]}")
    os.replace(database + ".new", database)
    os.chmod(database, 0o600)
    module.exit_json(changed=True, changes=changes, initialised=False, diff=diff,
                     msg=f"AIDE baseline updated: {len(changes)} change(s) taken as converged")


if __name__ == "__main__":
    main()
