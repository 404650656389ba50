"""What Braze's answers say about Braze: a refused configuration (halt) or silence (outage)."""

from __future__ import annotations

import logging

import pytest

from connector.braze import Action, Answer
from connector.braze_state import Halt, Outage, no_answer
from connector.metrics import WorkerMetrics

REFUSED = Answer(401, Action.HALT, "Invalid API key")
ACCEPTED = Answer(201, Action.DONE, "success")
THROTTLED = Answer(429, Action.RETRY, "too many")
UNAVAILABLE = Answer(503, Action.RETRY, "unavailable")
NO_CONNECTION = Answer(0, Action.RETRY, "no answer from Braze: connection refused")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


@pytest.mark.parametrize(
    ("answer", "silent"),
    [(NO_CONNECTION, True), (UNAVAILABLE, True), (Answer(500, Action.RETRY, ""), True),
     (THROTTLED, False), (ACCEPTED, False), (REFUSED, False),
     (Answer(400, Action.SPLIT, "bad"), False)],
)  # fmt: skip
def test_no_connection_timeouts_and_5xx_are_no_answer(answer: Answer, silent: bool) -> None:
    assert no_answer(answer) is silent


def test_a_halt_logs_once_and_sets_its_gauge(caplog: pytest.LogCaptureFixture) -> None:
    metrics = WorkerMetrics()
    halt = Halt(metrics.halted)
    halt.enter(REFUSED)
    halt.enter(REFUSED)
    assert (halt.active, halt.status) == (True, 401)
    assert metrics.registry.get_sample_value("outgrow_worker_halted") == 1
    halt.leave()
    halt.leave()
    assert metrics.registry.get_sample_value("outgrow_worker_halted") == 0
    assert len(lines(caplog, "refuses the configuration")) == 1
    assert len(lines(caplog, "accepts the configuration again")) == 1


def outage(clock: Clock) -> tuple[Outage, WorkerMetrics]:
    metrics = WorkerMetrics()
    return Outage(60.0, metrics.braze_outage, clock), metrics


def test_silence_shorter_than_the_setting_is_no_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    silence, metrics = outage(clock)
    silence.answered(NO_CONNECTION)
    clock.now += 59
    silence.check(3, 200)
    assert (silence.ongoing(), silence.reason()) == (False, None)
    silence.answered(THROTTLED)  # a 429 is an answer
    clock.now += 120
    silence.check(3, 200)
    assert not silence.ongoing()
    assert metrics.registry.get_sample_value("outgrow_worker_braze_outage") == 0
    assert caplog.records == []


def test_an_outage_warns_once_a_minute_then_logs_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    silence, metrics = outage(clock)
    silence.answered(UNAVAILABLE)
    clock.now += 30
    silence.answered(NO_CONNECTION)  # the outage runs from the first unanswered request
    clock.now += 30
    assert silence.reason() == "Braze has given no answer for 60 s"
    assert metrics.registry.get_sample_value("outgrow_worker_braze_outage") == 1  # asked once
    for _ in range(12):  # checked every 10 s for two minutes
        silence.check(5, 1_000)
        clock.now += 10
    warnings = lines(caplog, "braze has given no answer")
    assert len(warnings) == 2
    assert [w.levelno for w in warnings] == [logging.WARNING] * 2
    assert (warnings[0].requests_waiting, warnings[0].records_waiting) == (5, 1_000)  # type: ignore[attr-defined]
    assert metrics.registry.get_sample_value("outgrow_worker_braze_outage") == 1

    silence.answered(ACCEPTED)
    silence.answered(ACCEPTED)
    assert (silence.ongoing(), silence.reason()) == (False, None)
    assert metrics.registry.get_sample_value("outgrow_worker_braze_outage") == 0
    assert len(lines(caplog, "braze answers again")) == 1
