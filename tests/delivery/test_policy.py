"""Delivery decisions on a fake clock: no threads, no store, no HTTP."""

from __future__ import annotations

import pytest

from flask_otp_conversion.delivery import policy as P
from flask_otp_conversion.delivery.breaker import Breaker, Closed, Opened, Probe
from flask_otp_conversion.providers.base import AuthError, PermanentError, RetryableError, ThrottledError

T0 = 1_700_000_000.0
SERIAL = "5000:1045710669157053657849499619"


def make_policy(
    *, threshold: int = 3, reset: float = 10.0, probe_timeout: float = 6.0, max_age: float = 3600.0
) -> P.DeliveryPolicy:
    return P.DeliveryPolicy(
        cap=1000.0,
        concurrency=64,
        max_report_age=max_age,
        breaker=Breaker(threshold=threshold, reset_timeout=reset, max_reset_timeout=80.0, probe_timeout=probe_timeout),
        rng=lambda: 0.5,
    )


FRESH = P.Row(created_at=T0 - 5, attempts=0)
FAILED = P.Answer(P.Outcome.RETRYABLE, "InternalError boom")


def open_breaker(policy: P.DeliveryPolicy) -> None:
    for _ in range(policy.breaker.threshold):
        policy.decide(FAILED, FRESH, T0)
    assert policy.breaker.state == "open"


# Backoff --------------------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    assert P.backoff_delay(3, rng=lambda: 0.999) == pytest.approx(8 * 0.999)
    assert P.backoff_delay(3, rng=lambda: 0.0) == 0.0


def test_backoff_ceiling_is_capped_at_five_minutes() -> None:
    assert P.backoff_delay(40, rng=lambda: 1.0) == 300.0


def test_backoff_never_undercuts_the_providers_retry_after() -> None:
    assert P.backoff_delay(0, 7.5, rng=lambda: 0.5) == 7.5


def test_the_lease_outlasts_the_send_window_the_request_and_the_ack() -> None:
    assert P.lease_seconds(3.0, 5.0) > P.SEND_WINDOW + 3.0 + 5.0


# Claims -----------------------------------------------------------------------------------------------------


def test_a_claim_is_what_half_a_second_of_the_cap_can_send() -> None:
    assert P.claim_size(cap=1000, concurrency=64, latency=0.01) == 500


def test_a_claim_is_what_the_senders_can_send_at_the_observed_latency() -> None:
    assert P.claim_size(cap=1000, concurrency=8, latency=0.1) == 40


def test_a_claim_leaves_out_rows_already_waiting_for_a_sender() -> None:
    assert P.claim_size(cap=100, concurrency=64, latency=0.01, buffered=20) == 30


def test_the_latency_estimate_follows_the_answers() -> None:
    policy = make_policy()
    for _ in range(50):
        policy.decide(P.OK, FRESH, T0, took=0.05)
    assert policy.latency == pytest.approx(0.05, rel=0.05)
    assert policy.plan(T0, buffered=0) == P.Claim(P.claim_size(cap=1000, concurrency=64, latency=policy.latency))


def test_the_first_answer_replaces_the_guessed_latency() -> None:
    policy = make_policy()
    policy.decide(P.OK, FRESH, T0, took=0.002)
    assert policy.latency == pytest.approx(0.002)


def test_senders_needed_keep_up_with_the_cap_at_the_latency_and_a_fifth_more() -> None:
    assert P.senders_needed(1000.0, 0.05) == 61
    assert P.senders_needed(1000.0, 0.0) == 1


def test_senders_needed_stop_at_what_the_cpu_per_request_allows() -> None:
    # 0.2 ms of CPU a request: at most 5,000/s through one GIL, whatever the cap; at 0.4 ms a request, 3 in flight
    assert P.senders_needed(1e6, 0.0004, cpu=0.0002) == 4


def test_senders_are_bounded_by_what_the_gil_fills_at_the_fastest_recent_answer() -> None:
    policy = make_policy()
    policy.cap = 1e6
    for took in (0.0004, 0.004, 0.004, 0.004):  # the slow ones waited for the GIL behind other senders
        policy.decide(P.OK, FRESH, T0, took=took, cpu=0.0002)
    assert policy.senders_wanted() == 4  # 2 in flight keep the GIL busy at 0.4 ms, and the margins


def test_a_slow_provider_gets_senders_for_its_average_latency() -> None:
    policy = make_policy()
    for took in (0.02, 0.06) * 5:  # the plain mean of the first answers: 40 ms
        policy.decide(P.OK, FRESH, T0, took=took, cpu=0.0003)
    assert policy.senders_wanted() == P.senders_needed(1000.0, 0.04) == 49


def test_no_more_senders_are_wanted_before_the_first_request() -> None:
    assert make_policy().senders_wanted() == 0


def test_before_the_first_answer_senders_are_sized_by_how_long_it_has_taken() -> None:
    policy = make_policy()
    assert policy.senders_wanted(unanswered=0.05) == P.senders_needed(1000.0, 0.05) == 61
    assert policy.senders_wanted(unanswered=0.002) == 4  # a fast provider answers before more are asked for
    assert policy.senders_wanted(unanswered=30.0) == 64  # a hanging one: no more than the concurrency


def test_a_fast_answer_is_forgotten_after_two_windows_of_slower_ones() -> None:
    policy = make_policy()
    policy.decide(P.OK, FRESH, T0, took=0.001)
    for _ in range(2 * P.FLOOR_WINDOW):
        policy.decide(P.OK, FRESH, T0, took=0.04)
    assert policy.latency_floor == pytest.approx(0.04)


def test_senders_wanted_never_exceed_the_concurrency() -> None:
    policy = make_policy()
    policy.decide(P.OK, FRESH, T0, took=5.0)
    assert policy.senders_wanted() == 64


def test_the_cpu_estimate_follows_the_answers() -> None:
    policy = make_policy()
    policy.decide(P.OK, FRESH, T0, took=0.001, cpu=0.0002)
    assert policy.cpu == pytest.approx(0.0002)


def test_a_degraded_process_claims_nothing() -> None:
    policy = make_policy()
    policy.note_degraded(True, T0)
    assert isinstance(policy.plan(T0, buffered=0), P.Wait)
    assert policy.send_blocked_for(T0, None) is None


def test_the_degraded_flag_is_reread_at_most_once_a_second() -> None:
    policy = make_policy()
    assert policy.degraded_stale(T0)
    policy.note_degraded(False, T0)
    assert not policy.degraded_stale(T0 + 0.9)
    assert policy.degraded_stale(T0 + 1.0)


# Answers ----------------------------------------------------------------------------------------------------


def test_a_success_is_acked() -> None:
    assert make_policy().decide(P.OK, FRESH, T0).verdict == P.Ack()


def test_a_retryable_failure_is_retried_after_a_jittered_backoff() -> None:
    row = P.Row(created_at=T0 - 5, attempts=2)
    assert make_policy().decide(FAILED, row, T0).verdict == P.Retry(T0 + 0.5 * 4, FAILED.error)


def test_a_retry_waits_at_least_the_providers_retry_after() -> None:
    answer = P.Answer(P.Outcome.RETRYABLE, "busy", retry_after=30.0)
    verdict = make_policy().decide(answer, FRESH, T0).verdict
    assert verdict == P.Retry(T0 + 30.0, "busy")


def test_a_permanent_error_is_dead_lettered_with_its_reason() -> None:
    answer = P.classify(PermanentError("bad number", code="InvalidParameterValue"))
    assert make_policy().decide(answer, FRESH, T0).verdict == P.DeadLetter("InvalidParameterValue bad number")


def test_a_row_past_max_report_age_is_dead_lettered_instead_of_retried() -> None:
    old = P.Row(created_at=T0 - 7200, attempts=4)
    verdict = make_policy(max_age=3600).decide(FAILED, old, T0).verdict
    assert isinstance(verdict, P.DeadLetter)
    assert verdict.reason.startswith("expired after 5 attempt(s)")


def test_a_row_past_max_report_age_is_dead_on_claim() -> None:
    policy = make_policy(max_age=3600)
    assert policy.dead_on_claim(P.Row(created_at=T0 - 7200, attempts=0), T0)
    assert not policy.dead_on_claim(FRESH, T0)


def test_a_row_past_the_providers_deadline_is_dead_on_claim_with_that_reason() -> None:
    policy = make_policy(max_age=86400)
    policy.report_deadline = 3300.0
    reason = policy.dead_on_claim(P.Row(created_at=T0 - 60, attempts=0, sent_at=T0 - 3300), T0)
    assert reason == "expired: the provider takes no report later than 3300 s after the send"


def test_a_row_that_could_not_start_before_the_deadline_is_dead_on_claim() -> None:
    policy = make_policy(max_age=86400)
    policy.report_deadline = 3300.0
    just_inside = P.Row(created_at=T0, attempts=0, sent_at=T0 - 3300 + P.SEND_WINDOW + 0.01)
    assert policy.dead_on_claim(just_inside, T0) is None
    assert policy.dead_on_claim(P.Row(created_at=T0, attempts=0, sent_at=T0 - 3300 + 0.5), T0) is not None


def test_without_a_deadline_only_max_report_age_decides() -> None:
    policy = make_policy(max_age=86400)
    assert policy.dead_on_claim(P.Row(created_at=T0 - 60, attempts=0, sent_at=T0 - 80000), T0) is None


def test_an_auth_error_waits_without_backoff_and_opens_the_breaker_at_once() -> None:
    policy = make_policy(threshold=5)
    decision = policy.decide(P.classify(AuthError("AuthFailure", code="AuthFailure.SecretIdNotFound")), FRESH, T0)
    assert decision.verdict == P.Retry(T0, "AuthFailure.SecretIdNotFound AuthFailure")
    assert isinstance(decision.transition, Opened)


def test_throttling_pauses_every_send_for_the_retry_after_and_does_not_count_against_the_breaker() -> None:
    policy = make_policy(threshold=1)
    decision = policy.decide(P.classify(ThrottledError("slow down", retry_after=2.0)), FRESH, T0)
    assert isinstance(decision.verdict, P.Retry) and decision.verdict.at >= T0 + 2.0
    assert decision.transition is None and policy.breaker.state == "closed"
    assert policy.send_blocked_for(T0 + 0.5, None) == pytest.approx(1.5)
    assert policy.plan(T0 + 0.5, buffered=0) == P.Wait(1.5, "throttled")
    assert isinstance(policy.plan(T0 + 2.0, buffered=0), P.Claim)


def test_throttling_without_a_retry_after_pauses_one_second() -> None:
    policy = make_policy()
    policy.decide(P.classify(ThrottledError("slow down")), FRESH, T0)
    assert policy.send_blocked_for(T0, None) == pytest.approx(P.THROTTLE_PAUSE)


def test_an_unclassified_exception_is_retryable() -> None:
    assert P.classify(ConnectionResetError("peer reset")).outcome is P.Outcome.RETRYABLE


def test_a_dead_letter_reason_keeps_the_tencent_serial_number() -> None:
    answer = P.classify(PermanentError(f"serial {SERIAL} refused for +8613711112222", code="FailedOperation"))
    verdict = make_policy().decide(answer, FRESH, T0).verdict
    assert isinstance(verdict, P.DeadLetter)
    assert SERIAL in verdict.reason
    assert "13711112222" not in verdict.reason


# The breaker through the policy ---------------------------------------------------------------------------


def test_an_open_breaker_claims_nothing_until_its_timeout() -> None:
    policy = make_policy(reset=10.0)
    open_breaker(policy)
    assert policy.plan(T0 + 4, buffered=0) == P.Wait(6.0, "breaker")


def test_after_the_timeout_one_row_goes_out_as_the_probe() -> None:
    policy = make_policy(reset=10.0)
    open_breaker(policy)
    plan = policy.plan(T0 + 10, buffered=0)
    assert isinstance(plan, P.Claim) and plan.limit == 1 and isinstance(plan.probe, Probe)
    assert policy.send_blocked_for(T0 + 10, plan.probe) == 0.0
    assert policy.send_blocked_for(T0 + 10, None) is None  # rows claimed before it opened do not go


def test_a_successful_probe_closes_the_breaker_and_claims_resume() -> None:
    policy = make_policy(reset=10.0)
    open_breaker(policy)
    plan = policy.plan(T0 + 10, buffered=0)
    assert isinstance(plan, P.Claim)
    assert policy.decide(P.OK, FRESH, T0 + 10.1, probe=plan.probe).transition == Closed()
    assert isinstance(policy.plan(T0 + 10.2, buffered=0), P.Claim)


def test_a_probe_handed_back_unsent_lets_the_next_probe_out() -> None:
    """The probe jam: a probe's row that gets no rate-limit token in time is handed back. Before, the
    breaker stayed half-open and nothing was ever claimed again; now the hand-back settles the probe."""
    policy = make_policy(reset=10.0)
    open_breaker(policy)
    first = policy.plan(T0 + 10, buffered=0)
    assert isinstance(first, P.Claim) and first.probe is not None
    policy.cancel(first.probe)  # what the worker does for a row handed back (no token before its window)
    second = policy.plan(T0 + 11, buffered=0)
    assert isinstance(second, P.Claim) and isinstance(second.probe, Probe)


def test_a_probe_nobody_settles_still_lets_the_next_one_out_after_the_probe_timeout() -> None:
    policy = make_policy(reset=10.0, probe_timeout=6.0)
    open_breaker(policy)
    assert isinstance(policy.plan(T0 + 10, buffered=0), P.Claim)  # and then forgotten
    assert isinstance(policy.plan(T0 + 15, buffered=0), P.Wait)
    later = policy.plan(T0 + 16, buffered=0)
    assert isinstance(later, P.Claim) and later.probe is not None


# The summary ----------------------------------------------------------------------------------------------


def test_the_summary_comes_once_a_minute_with_the_counts() -> None:
    policy = make_policy()
    assert policy.summary_due(T0) is None
    policy.decide(P.OK, FRESH, T0 + 1)
    policy.decide(P.OK, FRESH, T0 + 2)
    policy.decide(FAILED, FRESH, T0 + 3)
    policy.decide(P.classify(PermanentError("bad")), FRESH, T0 + 4)
    assert policy.summary_due(T0 + 59) is None
    summary = policy.summary_due(T0 + 60)
    assert summary is not None
    assert (summary.reported, summary.retried, summary.dead) == (2, 1, 1)


def test_an_idle_minute_has_no_summary() -> None:
    policy = make_policy()
    policy.summary_due(T0)
    policy.decide(P.OK, FRESH, T0 + 1)
    assert policy.summary_due(T0 + 60) is not None
    assert policy.summary_due(T0 + 120) is None


def test_a_retryable_provider_error_keeps_its_retry_after() -> None:
    answer = P.classify(RetryableError("busy", code="InternalError", retry_after=3.0))
    assert answer == P.Answer(P.Outcome.RETRYABLE, "InternalError busy", 3.0)


def test_a_claim_looks_from_now_while_the_worker_is_quiet() -> None:
    assert P.claim_as_of(1000.0, busy=False, window=30.0) == 1000.0


def test_a_claim_looks_a_window_back_while_the_worker_serves_requests() -> None:
    assert P.claim_as_of(1000.0, busy=True, window=30.0) == 970.0


def test_no_window_means_no_holding_back() -> None:
    assert P.claim_as_of(1000.0, busy=True, window=0.0) == 1000.0
