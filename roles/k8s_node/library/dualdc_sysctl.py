#!/usr/bin/python
# -*- coding: utf-8 -*-
# Part of dualdc (JB Financial Group). Runs on the managed host with its Python 3.

from __future__ import annotations

DOCUMENTATION = r"""
module: dualdc_sysctl
short_description: Make live kernel parameters equal to the given values
description:
  - Reads each parameter from /proc/sys and writes those that differ; in check mode it
    reports them as a diff and writes nothing.
  - Only parameters whose name starts with one of I(prefixes) are touched, so a host that
    shares its kernel (a lab network namespace) changes only what is its own (net.*).
    The others are returned in C(not_applied).
  - Parameters this kernel (namespace) does not have are returned in C(missing), not failed.
options:
  values:
    description: Parameter name (dotted) to value.
    type: dict
    required: true
  prefixes:
    description: Only parameters starting with one of these are applied; C(['']) applies all.
    type: list
    elements: str
    default: ['']
author: JB Financial Group platform engineering
"""

EXAMPLES = r"""
- name: Apply the sysctls
  dualdc_sysctl:
    values:
      net.ipv4.ip_forward: 1
    prefixes: ['net.']
"""

RETURN = r"""
changed_keys:
  description: Parameters written (or, in check mode, that would be).
  type: list
  returned: always
missing:
  description: Parameters this kernel (namespace) does not have.
  type: list
  returned: always
not_applied:
  description: Parameters left alone because of I(prefixes).
  type: list
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule


def proc_path(key):
    return os.path.join("/proc/sys", *key.split("."))


def normalise(value):
    return " ".join(str(value).split())


def main():
    module = AnsibleModule(
        argument_spec=dict(
            values=dict(type="dict", required=True),
            prefixes=dict(type="list", elements="str", default=[""]),
        ),
        supports_check_mode=True,
    )
    values = module.params["values"]
    prefixes = module.params["prefixes"]
    changed, missing, not_applied = [], [], []
    before, after = [], []
    for key in sorted(values):
        want = normalise(values[key])
        if not any(key.startswith(p) for p in prefixes):
            not_applied.append(key)
            continue
        path = proc_path(key)
        if not os.path.exists(path):
            missing.append(key)
            continue
        try:
            with open(path) as handle:
                have = normalise(handle.read())
        except OSError as exc:
            module.fail_json(msg="cannot read %s: %s" % (key, exc))
        if have == want:
            continue
        changed.append(key)
        before.append("%s = %s\n" % (key, have))
        after.append("%s = %s\n" % (key, want))
        if not module.check_mode:
            try:
                with open(path, "w") as handle:
                    handle.write(want)
            except OSError as exc:
                module.fail_json(msg="cannot set %s to %s: %s" % (key, want, exc), changed_keys=changed)
    result = dict(changed=bool(changed), changed_keys=changed, missing=missing, not_applied=not_applied)
    if changed:
        result["diff"] = {"before_header": "live kernel parameters", "after_header": "model",
                          "before": "".join(before), "after": "".join(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
