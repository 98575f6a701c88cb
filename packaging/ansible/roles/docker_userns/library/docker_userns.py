#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: docker_userns
short_description: Put a Docker host into user-namespace remapping
description:
  - Runs C(docker-userns enable) or C(docker-userns disable) with
    C(--format json) and reports what it did.
  - Check mode runs the tool with C(--dry-run); the task reports C(changed)
    when there are changes to make, and changes nothing.
  - Diff mode adds C(--diff); the unified diffs of subuid, subgid and
    daemon.json are returned as the task's diff.
  - A failure of the tool fails the task with the tool's own error message.
options:
  state:
    description: C(enabled) runs C(docker-userns enable), C(disabled) runs C(docker-userns disable).
    type: str
    choices: [enabled, disabled]
    default: enabled
  user:
    description:
      - The remap user, as dockerd accepts it - C(default) (C(dockremap), created if missing),
        C(NAME), C(NAME:GROUP), C(UID) or C(UID:GID). I(state=enabled) only.
    type: str
    default: default
  count:
    description: Subordinate ids per file, at least 65536. I(state=enabled) only.
    type: int
    default: 65536
  root:
    description: Act on the system rooted at this directory (C(--root)); dockerd is not restarted then.
    type: path
    default: /
  no_restart:
    description: Change the files only; do not restart dockerd (C(--no-restart)).
    type: bool
    default: false
  stop_containers:
    description: Restart dockerd even though running containers will stop (C(--yes)).
    type: bool
    default: false
  purge:
    description: With I(state=disabled), also remove the dockremap account and its ranges (C(--purge)).
    type: bool
    default: false
  config:
    description: The daemon.json to edit (C(--config)).
    type: path
  data_root:
    description: dockerd's data root when daemon.json does not set it (C(--data-root)).
    type: path
  timeout:
    description: Seconds to wait for dockerd to come back (C(--timeout)).
    type: int
  binary:
    description: The docker-userns program.
    type: path
    default: /usr/sbin/docker-userns
"""

EXAMPLES = r"""
- name: Turn on user-namespace remapping
  docker_userns:
    state: enabled

- name: Prepare an image root offline
  docker_userns:
    root: /srv/images/web
    user: app:app
    count: 131072

- name: Back to no remapping
  docker_userns:
    state: disabled
    purge: true
"""

RETURN = r"""
report:
  description: The tool's JSON report (see docker-userns(8), JSON OUTPUT), without its diff.
  returned: always
  type: dict
actions:
  description: What was done, or in check mode would be done.
  returned: success
  type: list
cmd:
  description: The command that was run.
  returned: always
  type: list
exit_status:
  description: The tool's exit status (1 for a dry run with changes to make).
  returned: success
  type: int
rc:
  description: The tool's exit status.
  returned: failure
  type: int
"""

import json

from ansible.module_utils.basic import AnsibleModule


def build_command(module):
    p = module.params
    cmd = [p["binary"], "--format", "json", "--root", p["root"]]
    if p["config"]:
        cmd += ["--config", p["config"]]
    if p["data_root"]:
        cmd += ["--data-root", p["data_root"]]
    if p["timeout"] is not None:
        cmd += ["--timeout", str(p["timeout"])]
    if module.check_mode:
        cmd.append("--dry-run")
    if module._diff:
        cmd.append("--diff")
    if p["state"] == "enabled":
        cmd += ["enable", "--user", p["user"], "--count", str(p["count"])]
    else:
        cmd.append("disable")
        if p["purge"]:
            cmd.append("--purge")
    if p["no_restart"]:
        cmd.append("--no-restart")
    if p["stop_containers"]:
        cmd.append("--yes")
    return cmd


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["enabled", "disabled"], default="enabled"),
            user=dict(type="str", default="default"),
            count=dict(type="int", default=65536),
            root=dict(type="path", default="/"),
            no_restart=dict(type="bool", default=False),
            stop_containers=dict(type="bool", default=False),
            purge=dict(type="bool", default=False),
            config=dict(type="path"),
            data_root=dict(type="path"),
            timeout=dict(type="int"),
            binary=dict(type="path", default="/usr/sbin/docker-userns"),
        ),
        supports_check_mode=True,
    )

    cmd = build_command(module)
    rc, out, err = module.run_command(cmd)
    try:
        report = json.loads(out)
    except ValueError:
        module.fail_json(
            msg="docker-userns printed no JSON report (exit status %d): %s"
            % (rc, (err or out).strip()),
            cmd=cmd,
            rc=rc,
            stdout=out,
            stderr=err,
        )

    diff_text = report.pop("diff", None)
    if not report.get("ok") or rc == 2:
        error = report.get("error") or {}
        module.fail_json(
            msg=error.get("message") or (err.strip() or "docker-userns failed"),
            error=error,
            report=report,
            cmd=cmd,
            rc=rc,
            stderr=err,
        )

    for warning in report.get("warnings") or []:
        where = warning.get("file") or ""
        if warning.get("line"):
            where += ":%s" % warning["line"]
        module.warn("%s: %s" % (where, warning.get("message")) if where else warning.get("message"))

    actions = report.get("actions") or []
    if module.check_mode:
        # A dry run writes nothing ("changed" is false in its report): it
        # exits 1 and lists the actions when there is something to do.
        changed = rc == 1 or bool(actions)
    else:
        changed = bool(report.get("changed"))

    # Not "rc": Ansible fails a task whose result has a non-zero rc, and a
    # dry run with changes to make exits 1.
    result = dict(changed=changed, report=report, actions=actions, cmd=cmd, exit_status=rc)
    if module._diff and diff_text:
        result["diff"] = dict(prepared=diff_text)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
