"""Ansible module: make Uptime Kuma's monitors the ones labctl derives from its catalog.

Uptime Kuma has no configuration file for monitors: they live in its database, reached over its
socket.io API (the uptime-kuma-api client, for Uptime Kuma 1.21 to 1.23). The module runs on the
workstation (delegated to localhost: the controller's Python has the client), sets up the admin
account on a new instance, logs in, and adds, changes and deletes labctl's own monitors (their
description starts with `marker`); monitors people made are never touched. Check mode reports
the plan and changes nothing.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: uptime_kuma_monitors
short_description: Make Uptime Kuma's monitors the ones labctl derives from its catalog
description:
  - Sets up the admin account of an Uptime Kuma instance that has none, logs in, and adds,
    changes and deletes the monitors labctl owns (their description starts with O(marker)).
    Monitors made by people are left alone.
options:
  url: {description: Uptime Kuma's base URL., type: str, required: true}
  username: {description: The admin's login., type: str, required: true}
  password: {description: The admin's password., type: str, required: true}
  monitors:
    description: The monitors wanted (labctl/uptime.py), each with name, type, description.
    type: list
    elements: dict
    required: true
  marker: {description: What starts the description of a monitor labctl owns., type: str, default: "labctl:"}
  timeout: {description: Seconds to wait for each API answer., type: float, default: 30}
"""

RETURN = r"""
added: {description: Names of the monitors added., type: list, returned: always}
changed_monitors: {description: Names of the monitors changed., type: list, returned: always}
deleted: {description: Names of labctl's stale monitors deleted., type: list, returned: always}
setup: {description: Whether the admin account was (would be) set up., type: bool, returned: always}
conflicts:
  description: Names of wanted monitors taken by a person's monitor (left alone).
  type: list
  returned: always
"""

# The monitor fields labctl sets, compared to decide whether a monitor changed.
FIELDS = ("type", "url", "hostname", "port", "interval", "retryInterval", "maxretries", "description")


def _text(value: Any) -> str:
    """A field's value as text (the API gives a monitor's type as an enum member)."""
    value = getattr(value, "value", value)
    return "" if value is None else str(value)


def plan(existing: list[dict[str, Any]], wanted: list[dict[str, Any]], marker: str) -> dict[str, list[Any]]:
    """What makes Uptime Kuma's monitors (`existing`, as its API lists them, with `id`) the
    wanted ones: monitors to add, `(id, monitor)` pairs to change, ids to delete. Only monitors
    whose description starts with `marker` are changed or deleted; a person's monitor that has a
    wanted monitor's name is left alone and the wanted one is not added beside it (`conflicts`)."""

    def owned(monitor: dict[str, Any]) -> bool:
        return _text(monitor.get("description")).startswith(marker)

    by_name = {_text(m.get("name")): m for m in existing}
    result: dict[str, list[Any]] = {"add": [], "change": [], "delete": [], "conflicts": []}
    for monitor in wanted:
        current = by_name.get(monitor["name"])
        if current is None:
            result["add"].append(monitor)
        elif not owned(current):
            result["conflicts"].append(monitor["name"])
        elif any(_text(current.get(k)) != _text(monitor.get(k)) for k in FIELDS if k in monitor):
            result["change"].append((int(current["id"]), monitor))
    names = {m["name"] for m in wanted}
    result["delete"] = [int(m["id"]) for m in existing if owned(m) and _text(m.get("name")) not in names]
    return result


def typed(monitors: list[dict[str, Any]], monitor_type: Any) -> list[dict[str, Any]]:
    """The wanted monitors with their type as the client takes it (uptime_kuma_api.MonitorType)."""
    return [{**m, "type": monitor_type(m["type"])} for m in monitors]


def apply(api: Any, params: dict[str, Any], wanted: list[dict[str, Any]], check: bool) -> dict[str, Any]:
    """Log in (setting up the admin on a new instance) and carry out the plan through `api`, an
    uptime_kuma_api.UptimeKumaApi."""
    setup = api.need_setup()
    if setup:
        if check:  # nothing to log in to yet: every monitor would be added
            return {
                "changed": True,
                "setup": True,
                "added": [m["name"] for m in wanted],
                "changed_monitors": [],
                "deleted": [],
                "conflicts": [],
            }
        api.setup(params["username"], params["password"])
    api.login(params["username"], params["password"])
    existing = api.get_monitors()
    todo = plan(existing, wanted, params["marker"])
    names = {int(m["id"]): _text(m.get("name")) for m in existing}
    if not check:
        for monitor in todo["add"]:
            api.add_monitor(**monitor)
        for id_, monitor in todo["change"]:
            api.edit_monitor(id_, **monitor)
        for id_ in todo["delete"]:
            api.delete_monitor(id_)
    return {
        "changed": setup or bool(todo["add"] or todo["change"] or todo["delete"]),
        "added": [m["name"] for m in todo["add"]],
        "changed_monitors": [m["name"] for _, m in todo["change"]],
        "deleted": [names[id_] for id_ in todo["delete"]],
        "conflicts": todo["conflicts"],
        "setup": setup,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "username": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "monitors": {"type": "list", "elements": "dict", "required": True},
            "marker": {"type": "str", "default": "labctl:"},
            "timeout": {"type": "float", "default": 30},
        },
        supports_check_mode=True,
    )
    try:
        from uptime_kuma_api import MonitorType, UptimeKumaApi  # type: ignore[import-untyped]
    except ImportError:
        module.fail_json(msg="the controller's Python lacks the uptime-kuma-api package")
        return
    params = module.params
    wanted = typed(params["monitors"], MonitorType)
    try:
        api = UptimeKumaApi(params["url"], timeout=params["timeout"])
    except Exception as error:  # the client raises plain exceptions on connect
        module.fail_json(msg=f"cannot reach Uptime Kuma at {params['url']}: {error}")
        return
    try:
        result = apply(api, params, wanted, module.check_mode)
    except Exception as error:  # UptimeKumaException and socket errors alike
        module.fail_json(msg=f"Uptime Kuma at {params['url']}: {error}")
        return
    finally:
        api.disconnect()
    for name in result["conflicts"]:
        module.warn(f"monitor {name!r} was made by a person: labctl leaves it as it is")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
