"""What a fault-test run does and when: its setting, and the schedule of faults it derives.

A run posts `leads` leads at `rate_per_s` (the stream lasts `leads / rate_per_s` seconds) and,
while they flow, stops workers at even intervals, kills one broker and starts it again, kills the
receiver and starts it again, takes Braze down and then answers with 429s. Times are seconds from
the first lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple


class Action(Enum):
    """One thing the schedule does to the system under test."""

    STOP_WORKER = "stop a worker and start its replacement"
    KILL_BROKER = "SIGKILL a Kafka broker"
    RESTART_BROKER = "start the killed broker again"
    KILL_RECEIVER = "SIGKILL the receiver"
    RESTART_RECEIVER = "start the receiver again"
    BRAZE_OUTAGE = "Braze answers 503 to everything"
    RATE_LIMIT_STORM = "Braze answers 429 to everything"


class Fault(NamedTuple):
    """An action at `at_s` seconds into the stream; `lasting_s` for an outage or a storm."""

    at_s: float
    action: Action
    lasting_s: float = 0.0


@dataclass(frozen=True)
class ChaosSetting:
    """How big a run is and how hard it is hit."""

    name: str
    leads: int
    rate_per_s: float
    users: int
    workers: int
    worker_stops: int
    broker_down_s: float
    receiver_down_s: float
    outage_s: float
    storm_s: float
    partitions: int = 6
    settle_timeout_s: float = 90.0  # after the last lead: how long delivery may take to finish

    @property
    def stream_s(self) -> float:
        """How long posting the leads takes when nothing is refused."""
        return self.leads / self.rate_per_s


# `make test`: every fault once or more, in about half a minute a run.
SHORT = ChaosSetting(
    name="short",
    leads=600,
    rate_per_s=40.0,
    users=300,
    workers=2,
    worker_stops=4,
    broker_down_s=3.0,
    receiver_down_s=1.0,
    outage_s=3.0,
    storm_s=2.0,
    settle_timeout_s=60.0,
)
# `make chaos`: twenty worker stops and a 20 s outage, as the issue's own trial had.
FULL = ChaosSetting(
    name="full",
    leads=4_000,
    rate_per_s=40.0,
    users=2_000,
    workers=3,
    worker_stops=20,
    broker_down_s=10.0,
    receiver_down_s=2.0,
    outage_s=20.0,
    storm_s=10.0,
    settle_timeout_s=120.0,
)
SETTINGS = {setting.name: setting for setting in (SHORT, FULL)}

# Where in the stream each fault starts, as a fraction of its length. Braze's faults come first,
# while leads flow freely: a broker's death stalls delivery for the seconds Kafka takes to move
# its leaderships and the group's coordinator, and an outage within that stall would go unseen.
OUTAGE_AT = 0.1
STORM_AT = 0.35
BROKER_AT = 0.5
RECEIVER_AT = 0.7


def schedule(setting: ChaosSetting) -> list[Fault]:
    """Every fault of a run, in time order."""
    length = setting.stream_s
    stops = setting.worker_stops
    faults = [Fault(length * (n + 1) / (stops + 1), Action.STOP_WORKER) for n in range(stops)]
    broker_at, receiver_at = length * BROKER_AT, length * RECEIVER_AT
    faults += [
        Fault(broker_at, Action.KILL_BROKER),
        Fault(broker_at + setting.broker_down_s, Action.RESTART_BROKER),
        Fault(receiver_at, Action.KILL_RECEIVER),
        Fault(receiver_at + setting.receiver_down_s, Action.RESTART_RECEIVER),
        Fault(length * OUTAGE_AT, Action.BRAZE_OUTAGE, setting.outage_s),
        Fault(length * STORM_AT, Action.RATE_LIMIT_STORM, setting.storm_s),
    ]
    return sorted(faults, key=lambda fault: fault.at_s)
