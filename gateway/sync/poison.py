"""Finding a poison message: a pure state machine (no I/O, no broker), fed by the pump.

Some brokers drop the connection instead of refusing a message they will not take
(Mosquitto's ``message_size_limit``). When a connection breaks with telemetry in flight, the
oldest message in flight is suspect:

* a suspect of several rows makes the next messages *cautious*: half as many rows per
  message around it (:attr:`PoisonTracker.cautious`), halved again at each loss, until it
  goes through;
* a suspect of one row that is the oldest in flight at ``strikes`` losses in a row is
  dead-lettered (:attr:`Verdict.DEAD_LETTER`);
* a message sent after the suspect (or carrying it) that is acknowledged clears the
  suspicion (it was the network, not the message); an acknowledged message carrying the
  cautious row restores full batches.

A refusal (ACL, bad topic), a quota, or a missing PUBACK says nothing about a message and is
never a strike; once the broker refused the telemetry topic and acknowledged nothing since,
a connection loss is not a strike either (Mosquitto 2.0.11 drops the connection right after
a PUBACK 0x87, sometimes before it is read).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: Connection losses with the same single row oldest in flight before it is dead-lettered.
POISON_STRIKES = 3


class Verdict(enum.Enum):
    NOTHING = "nothing"  # no message in flight, or the loss says nothing about one
    SPLIT = "split"  # the oldest message had several rows: smaller messages from now on
    STRIKE = "strike"  # one more strike against a single-row message
    DEAD_LETTER = "dead-letter"  # that row goes to the dead-letter table


@dataclass(slots=True)
class PoisonTracker:
    strikes: int = POISON_STRIKES
    #: (first seq of the oldest message in flight at a loss, losses in a row)
    suspect: tuple[int, int] | None = None
    #: Rows per message while a suspected batch is narrowed down (None: full batches).
    cautious: int | None = None
    cautious_seq: int = 0
    #: Telemetry messages sent (all connections), and the number of the message of this
    #: connection that carried the suspect row (None: not sent yet on this connection).
    sent: int = 0
    suspect_sent: int | None = None
    #: The broker refused the telemetry topic and has acknowledged no telemetry since.
    topic_refused: bool = False

    def batch_limit(self, configured: int) -> int:
        """Rows per message now."""
        return min(configured, self.cautious or configured)

    def new_connection(self) -> None:
        self.suspect_sent = None

    def sent_message(self, first_seq: int, last_seq: int) -> int:
        """A message carrying ``first_seq..last_seq`` went out; its number."""
        self.sent += 1
        if self.suspect is not None and first_seq <= self.suspect[0] <= last_seq:
            self.suspect_sent = self.sent
        return self.sent

    def acknowledged(self, first_seq: int, last_seq: int, number: int) -> None:
        """The broker took message ``number`` (carrying ``first_seq..last_seq``)."""
        self.topic_refused = False
        if self.cautious is not None and first_seq <= self.cautious_seq <= last_seq:
            self.cautious = None  # the suspect went through: back to full batches
        if self.suspect_sent is not None and number >= self.suspect_sent:
            # the broker took a message sent after the suspect: it was not the cause
            self.suspect = None
            self.suspect_sent = None

    def refused_topic(self) -> None:
        """The broker refused the telemetry topic (a configuration problem)."""
        self.topic_refused = True

    def connection_lost(self, oldest_first_seq: int | None, oldest_rows: int) -> Verdict:
        """The connection broke (not a refusal, quota or timeout) while the message starting
        at ``oldest_first_seq`` (of ``oldest_rows`` rows) was the oldest in flight."""
        if oldest_first_seq is None or oldest_rows < 1 or self.topic_refused:
            return Verdict.NOTHING
        if oldest_rows > 1:
            # narrow it down at once: halving costs nothing if it was only the network
            self.cautious = max(1, oldest_rows // 2)
            self.cautious_seq = oldest_first_seq
            return Verdict.SPLIT
        if self.suspect is not None and self.suspect[0] == oldest_first_seq:
            self.suspect = (oldest_first_seq, self.suspect[1] + 1)
        else:
            self.suspect = (oldest_first_seq, 1)
        if self.suspect[1] < self.strikes:
            return Verdict.STRIKE
        self.suspect = None
        self.cautious = None
        return Verdict.DEAD_LETTER
