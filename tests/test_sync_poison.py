"""The poison-message state machine on its own: no broker, no store (gateway/sync/poison.py).
The end-to-end case (a broker that drops the connection for a message) is in
tests/test_sync_outbox.py."""

from __future__ import annotations

from gateway.sync.poison import POISON_STRIKES, PoisonTracker, Verdict


def test_a_loss_with_a_multi_row_message_oldest_halves_the_batches() -> None:
    p = PoisonTracker()
    assert p.batch_limit(100) == 100
    assert p.connection_lost(oldest_first_seq=10, oldest_rows=40) is Verdict.SPLIT
    assert (p.cautious, p.cautious_seq) == (20, 10)
    assert p.batch_limit(100) == 20
    assert p.batch_limit(8) == 8  # never more than configured
    # halved again at the next loss with a smaller message oldest
    assert p.connection_lost(10, 20) is Verdict.SPLIT
    assert p.batch_limit(100) == 10
    assert p.connection_lost(10, 3) is Verdict.SPLIT
    assert p.batch_limit(100) == 1


def test_an_acknowledged_message_carrying_the_cautious_row_restores_full_batches() -> None:
    p = PoisonTracker()
    p.connection_lost(10, 40)
    n = p.sent_message(30, 49)
    p.acknowledged(30, 49, n)  # does not carry seq 10
    assert p.batch_limit(100) == 20
    n = p.sent_message(10, 29)
    p.acknowledged(10, 29, n)
    assert p.batch_limit(100) == 100


def test_a_single_row_oldest_at_every_loss_is_dead_lettered_after_the_strikes() -> None:
    p = PoisonTracker()
    verdicts = [p.connection_lost(7, 1) for _ in range(POISON_STRIKES)]
    assert verdicts == [Verdict.STRIKE] * (POISON_STRIKES - 1) + [Verdict.DEAD_LETTER]
    assert p.suspect is None
    assert p.cautious is None
    # counting starts again for whatever is oldest next
    assert p.connection_lost(8, 1) is Verdict.STRIKE


def test_another_row_oldest_restarts_the_count() -> None:
    p = PoisonTracker(strikes=3)
    assert p.connection_lost(7, 1) is Verdict.STRIKE
    assert p.connection_lost(7, 1) is Verdict.STRIKE
    assert p.connection_lost(9, 1) is Verdict.STRIKE  # a different oldest: 1 strike
    assert p.connection_lost(9, 1) is Verdict.STRIKE
    assert p.connection_lost(9, 1) is Verdict.DEAD_LETTER


def test_a_later_message_acknowledged_clears_the_suspicion() -> None:
    """It was the network: a message sent after (or with) the suspect went through."""
    p = PoisonTracker(strikes=2)
    assert p.connection_lost(7, 1) is Verdict.STRIKE
    p.new_connection()
    before = p.sent_message(1, 6)  # sent before the suspect: says nothing
    p.acknowledged(1, 6, before)
    assert p.suspect == (7, 1)
    carrying = p.sent_message(7, 7)
    later = p.sent_message(8, 20)
    p.acknowledged(8, 20, later)  # sent after the suspect
    assert p.suspect is None
    # mypy keeps p.suspect narrowed to a tuple across the call that clears it
    assert carrying < later  # type: ignore[unreachable]
    assert p.connection_lost(7, 1) is Verdict.STRIKE  # a fresh count, not a dead letter


def test_an_ack_on_a_new_connection_before_the_suspect_is_resent_keeps_it() -> None:
    p = PoisonTracker(strikes=2)
    n = p.sent_message(7, 7)
    assert p.connection_lost(7, 1) is Verdict.STRIKE
    p.new_connection()  # the suspect has not been sent on this connection yet
    p.acknowledged(7, 7, n)  # a late ack of an old number does not count either
    assert p.suspect_sent is None
    assert p.suspect == (7, 1)


def test_nothing_in_flight_or_a_refused_topic_is_never_a_strike() -> None:
    p = PoisonTracker(strikes=1)
    assert p.connection_lost(None, 0) is Verdict.NOTHING
    p.refused_topic()
    assert p.connection_lost(7, 1) is Verdict.NOTHING
    assert p.connection_lost(7, 5) is Verdict.NOTHING
    assert p.cautious is None
    n = p.sent_message(1, 1)
    p.acknowledged(1, 1, n)  # the broker took telemetry again
    assert p.connection_lost(7, 1) is Verdict.DEAD_LETTER
