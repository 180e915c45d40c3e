"""Hand-computed cases for the detection metrics (hop 0.1 s unless said otherwise)."""

import numpy as np
import pytest

from wakeword.metrics import (
    DETCurve,
    clip_error_rates,
    clip_scores,
    count_false_accepts,
    det_curve,
    detection_hops,
    fa_rate,
    false_accepts_per_hour,
    false_reject_rate,
    plot_det,
    refractory_hops,
    roc_auc,
    threshold_for_fa_per_hour,
)

HOP = 0.1


def track(n_hops: int, *runs: tuple[int, int, float]) -> np.ndarray:
    """Zeros with `value` on hops [start, stop) for each (start, stop, value)."""
    scores = np.zeros(n_hops)
    for start, stop, value in runs:
        scores[start:stop] = value
    return scores


def test_refractory_hops_rounds_up_without_float_noise():
    assert refractory_hops(1.0, 0.1) == 10  # 1.0 / 0.1 is 10.000000000000002 in floats
    assert refractory_hops(0.25, 0.1) == 3
    assert refractory_hops(0.0, 0.1) == 0


def test_one_sustained_activation_of_30_hops_counts_once():
    scores = track(100, (20, 50, 0.9))
    assert count_false_accepts(scores, 0.5, HOP, refractory_seconds=1.0) == 1
    assert count_false_accepts(scores, 0.5, HOP, refractory_seconds=0.0) == 1  # refractory not what merges it
    assert detection_hops(scores, 0.5, HOP, 1.0).tolist() == [20]


def test_back_to_back_activations_inside_refractory_count_once():
    # onsets at hops 10 and 15: 5 hops apart, refractory 1.0 s = 10 hops
    scores = track(60, (10, 13, 0.9), (15, 18, 0.9))
    assert detection_hops(scores, 0.5, HOP, 1.0).tolist() == [10]
    assert count_false_accepts(scores, 0.5, HOP, 1.0) == 1


def test_activations_further_apart_than_refractory_count_twice():
    # onsets at hops 10 and 22: 12 hops apart > 10
    scores = track(60, (10, 13, 0.9), (22, 25, 0.9))
    assert detection_hops(scores, 0.5, HOP, 1.0).tolist() == [10, 22]
    # exactly the refractory period after the first detection triggers again
    scores = track(60, (10, 13, 0.9), (20, 23, 0.9))
    assert detection_hops(scores, 0.5, HOP, 1.0).tolist() == [10, 20]


def test_suppressed_edge_does_not_restart_refractory():
    # edges at 0, 6, 12: 6 is suppressed (< 10 after 0); 12 is 12 after the last DETECTION -> counts
    scores = track(40, (0, 2, 0.9), (6, 8, 0.9), (12, 14, 0.9))
    assert detection_hops(scores, 0.5, HOP, 1.0).tolist() == [0, 12]


def test_activation_at_first_hop_and_threshold_tie_fire():
    scores = np.array([0.5, 0.5, 0.2, 0.49])
    assert detection_hops(scores, 0.5, HOP, 0.0).tolist() == [0]
    assert detection_hops(scores, 0.49, HOP, 0.0).tolist() == [0, 3]


def test_fa_per_hour_scales_with_duration():
    scores = track(36000, (100, 110, 0.8), (5000, 5001, 0.8), (20000, 20100, 0.8))  # 3 FAs in 1 h of hops
    assert false_accepts_per_hour(scores, 0.5, HOP) == pytest.approx(3.0)
    assert false_accepts_per_hour(scores, 0.5, HOP, duration_seconds=1800) == pytest.approx(6.0)
    assert false_accepts_per_hour([scores, scores], 0.5, HOP) == pytest.approx(3.0)  # 6 FAs in 2 h
    assert false_accepts_per_hour(scores, 0.9, HOP) == 0.0


def test_threshold_for_target_on_hand_made_track():
    # 1 hour of hops with three peaks 0.9, 0.7, 0.6 (each its own activation, far apart) over a
    # background alternating 0, 0.05: at 0.05 it fires every refractory period, 3600 FA/h
    scores = np.tile([0.0, 0.05], 18000)
    scores[[100, 10000, 10001, 10002, 20000, 20001]] = [0.9, 0.7, 0.7, 0.7, 0.6, 0.6]
    assert false_accepts_per_hour(scores, 0.05, HOP, 1.0) == pytest.approx(3600, rel=0.01)
    assert threshold_for_fa_per_hour(scores, 0.0, HOP) == pytest.approx(np.nextafter(0.9, 1))
    assert threshold_for_fa_per_hour(scores, 1.0, HOP) == pytest.approx(0.9)
    assert threshold_for_fa_per_hour(scores, 2.5, HOP) == pytest.approx(0.7)
    assert threshold_for_fa_per_hour(scores, 3.0, HOP) == pytest.approx(0.6)
    assert threshold_for_fa_per_hour(scores, 100.0, HOP) == pytest.approx(0.6)
    assert threshold_for_fa_per_hour(scores, 1e6, HOP) == 0.0  # at 0.0 every hop fires: one activation


def test_threshold_for_target_stops_where_fa_first_exceeds_target():
    # one activation 0.8 0.3 0.8: at 0.3 it is one FA, above 0.3 it splits into two (refractory 0)
    scores = track(36000, (100, 101, 0.8), (101, 102, 0.3), (102, 103, 0.8))
    assert count_false_accepts(scores, 0.5, HOP, 0.0) == 2
    assert count_false_accepts(scores, 0.3, HOP, 0.0) == 1
    # target 1/h: 0.3 meets it, but 0.8 (higher) does not, so no threshold at or below 0.8 is safe
    assert threshold_for_fa_per_hour(scores, 1.0, HOP, refractory_seconds=0.0) > 0.8


def test_false_reject_rate_counts():
    assert false_reject_rate([0.1, 0.6, 0.5, 0.9], 0.5) == pytest.approx(0.25)
    assert false_reject_rate([0.1, 0.6, 0.5, 0.9], 0.95) == 1.0
    with pytest.raises(ValueError):
        false_reject_rate([], 0.5)


def test_clip_scores_are_maxima_and_clip_rates():
    scores = clip_scores([np.array([0.1, 0.7, 0.2]), np.array([0.3]), np.array([0.05, 0.02])])
    assert scores.tolist() == pytest.approx([0.7, 0.3, 0.05])
    rates = clip_error_rates([0.7, 0.3, 0.9], [0.05, 0.6, 0.1, 0.2], 0.5)
    assert (rates.far, rates.frr) == (pytest.approx(0.25), pytest.approx(1 / 3))
    assert (rates.n_positive, rates.n_negative) == (3, 4)


def test_roc_auc_separated_reversed_and_ties():
    assert roc_auc([0.8, 0.9, 0.7], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1, 0.2], [0.8, 0.9, 0.7]) == 0.0
    assert roc_auc([0.5], [0.5]) == 0.5
    # pairs (pos, neg): (0.6 > 0.4) (0.6 < 0.7) (0.3 < 0.4) (0.3 < 0.7) -> 1 of 4
    assert roc_auc([0.6, 0.3], [0.4, 0.7]) == pytest.approx(0.25)


def test_det_curve_points_and_plot(tmp_path):
    positives = [0.2, 0.6, 0.9]
    negatives = track(36000, (10, 20, 0.7), (1000, 1001, 0.4))
    curve = det_curve(positives, negatives, HOP, thresholds=[0.3, 0.5, 0.8])
    assert curve.frr.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    assert curve.fa_per_hour.tolist() == pytest.approx([2.0, 1.0, 0.0])
    assert curve.at(0.49) == (pytest.approx(1 / 3), pytest.approx(1.0))
    default = det_curve(positives, negatives, HOP)
    assert np.all(np.diff(default.frr) >= 0)  # FRR never falls as the threshold rises
    path = plot_det({"a": curve, "b": default}, tmp_path / "det.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(curve, DETCurve)


def test_fa_rate_has_the_exact_poisson_interval():
    # no false accept in 2 minutes: the one-sided 95% bound -ln(0.05) = 2.996 events in 1/30 h
    none = fa_rate(0, 2 / 60)
    assert none.per_hour == 0.0 and none.low == 0.0
    assert none.high == pytest.approx(-np.log(0.05) * 30, rel=1e-6)  # 89.87 per hour
    assert str(none) == "0 false accepts in 2.0 min: below 89.9 per hour (95%)"
    # 3 in half an hour: Garwood's table gives 0.619-8.767 events, so 1.24-17.5 per hour around 6
    three = fa_rate(3, 0.5)
    assert three.per_hour == 6.0
    assert three.low == pytest.approx(2 * 0.6186721, rel=1e-5) and three.high == pytest.approx(2 * 8.7672932, rel=1e-5)
    assert str(three) == "3 false accepts in 30.0 min: 6 per hour (95% interval 1.24-17.5)"
    assert str(fa_rate(1, 2.0)).startswith("1 false accept in 2.00 h: 0.5 per hour")
    with pytest.raises(ValueError):
        fa_rate(1, 0.0)


def test_det_curve_sweeps_logits_beyond_the_probability_range():
    # logits of 25 and 30 would both be probability 1.0 in float32; the sweep must still separate them
    curve = det_curve([30.0, 25.0], [np.array([-3.0, 27.0, -3.0])], hop_seconds=0.1, duration_seconds=3600)
    frr, fa = curve.at(26.0)  # between the two positives, below the negative peak
    assert frr == 0.5 and fa == 1.0
    assert curve.fa_per_hour[-1] == 0.0  # the top of the sweep fires nowhere
