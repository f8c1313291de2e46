"""The demo's automations and its simulated phone's owner (``migw run --demo``).

* door opens -> the hall relay pulses: 3 s at night (sunset to sunrise, or 18:00-08:00 without
  a location), 1 s by day; the trace shows which branch ran and why;
* a water leak -> the Zigbee plug turns off;
* a double press of the hall button -> the status LED toggles;
* the demo phone (a rotating private address, resolved with its IRK) arrives -> a message
  is published.
"""

from __future__ import annotations

from gateway.config import (
    ActionDef,
    AutomationDef,
    ChoiceDef,
    ConditionDef,
    Config,
    PresencePerson,
    PresenceSection,
    Secret,
    TriggerDef,
)

DEMO_PERSON = "demo-phone"


def _zigbee_ids() -> dict[str, str]:
    from gateway.demo import DEMO_ZIGBEE_SEED
    from hw_mocks.aqara import MODELS
    from hw_mocks.znp import ZStackSimulator

    sim = ZStackSimulator(devices=MODELS, seed=DEMO_ZIGBEE_SEED)
    sim.close()  # only its (seeded) device addresses are needed
    return {d.model: "zb-" + d.ieee.lower() for d in sim.devices}


def demo_automations(cfg: Config) -> Config:
    """``cfg`` with the demo automations and person, unless it defines its own."""
    if cfg.automations:
        return cfg
    from hw_mocks.phone import DEMO_IRK

    zb = _zigbee_ids()
    night = (
        ConditionDef(type="time", after="sunset", before="sunrise")
        if cfg.location.latitude is not None
        else ConditionDef(type="time", after="18:00", before="08:00")
    )
    autos = (
        AutomationDef(
            id="door-hall-light",
            name="Door opens: hall relay pulses (longer at night)",
            triggers=(
                TriggerDef(type="state", device="gpio-front-door", metric="opening", to=True),
            ),
            actions=(
                ActionDef(
                    type="choose",
                    choose=(
                        ChoiceDef(
                            conditions=(night,),
                            actions=(
                                ActionDef(
                                    type="command",
                                    device="gpio-hall-relay",
                                    command="pulse",
                                    seconds=3.0,
                                ),
                            ),
                        ),
                    ),
                    default=(
                        ActionDef(
                            type="command", device="gpio-hall-relay", command="pulse", seconds=1.0
                        ),
                    ),
                ),
            ),
        ),
        AutomationDef(
            id="leak-plug-off",
            name="Water leak: the plug turns off",
            triggers=(
                TriggerDef(
                    type="state", device=zb["lumi.sensor_wleak.aq1"], metric="water_leak", to=True
                ),
            ),
            actions=(
                ActionDef(type="command", device=zb["lumi.plug"], command="off"),
                ActionDef(type="publish", message="water leak: plug switched off"),
            ),
        ),
        AutomationDef(
            id="double-press-led",
            name="Double press: the status LED toggles",
            triggers=(TriggerDef(type="event", device="gpio-hall-button", action="double"),),
            actions=(ActionDef(type="command", device="gpio-status-led", command="toggle"),),
        ),
        AutomationDef(
            id="welcome-home",
            name="The demo phone arrives: a message",
            triggers=(TriggerDef(type="presence", person=DEMO_PERSON, to="home"),),
            conditions=(ConditionDef(type="not_fired", seconds=30.0),),
            actions=(ActionDef(type="publish", message="welcome home"),),
        ),
    )
    presence = cfg.presence
    if not presence.people:
        presence = PresenceSection(
            away_after_s=20.0,
            people=(PresencePerson(name=DEMO_PERSON, irk=(Secret(DEMO_IRK),)),),
        )
    return cfg.replace(automations=autos, presence=presence)
