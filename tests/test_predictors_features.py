"""Features known at arrival/submit: exact against brute-force loops, and never a look into the future."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictors.evaluate import duration_metrics, length_metrics, window_kendall
from predictors.features import (COUNT_CAP, DURATION_FEATURES, LENGTH_FEATURES, Clock, duration_features,
                                 length_features)

L = {f.name: i for i, f in enumerate(LENGTH_FEATURES)}
D = {f.name: i for i, f in enumerate(DURATION_FEATURES)}


def _stream(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, 600, n)).round(1)  # rounding makes ties
    prompt = rng.choice([10, 20, 30, 40, 55], n)
    output = rng.integers(1, 900, n)
    return arrival, prompt, output


def _brute_length(arrival, prompt, output, lag, window):
    rows = []
    for i in range(len(arrival)):
        seen = [j for j in range(len(arrival)) if arrival[j] <= arrival[i] - lag]
        last = seen[-window:]
        logs = np.log1p(output[last].astype(float))
        same = [j for j in seen if prompt[j] == prompt[i]]
        rows.append([len(last), logs.mean() if last else np.nan, logs.std() if last else np.nan,
                     np.log1p(output[same[-1]]) if same else np.nan, min(len(same), COUNT_CAP)])
    return np.array(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_length_history_matches_a_brute_force_loop(seed):
    arrival, prompt, output = _stream(seed)
    X = length_features(arrival, prompt, output, service=1, history_lag_s=30.0, window=20)
    want = _brute_length(arrival, prompt, output, 30.0, 20)
    cols = ["hist_count", "hist_mean_log_output", "hist_std_log_output", "same_prompt_last_log_output",
            "same_prompt_count"]
    got = X[:, [L[c] for c in cols]].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert np.all(X[:, L["prompt_tokens"]] == prompt) and np.all(X[:, L["service"]] == 1)
    assert np.all(np.isnan(X[:, L["hour_of_day"]]))  # no clock, no hour


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), i=st.integers(0, 199), lag=st.sampled_from([1.0, 15.0, 120.0]))
def test_a_request_never_sees_outputs_that_are_not_yet_visible(seed, i, lag):
    arrival, prompt, output = _stream(seed, 200)
    base = length_features(arrival, prompt, output, history_lag_s=lag)
    changed = output.copy()
    invisible = arrival > arrival[i] - lag  # its own output, concurrent requests and the future
    changed[invisible] = changed[invisible] * 7 + 3
    again = length_features(arrival, prompt, changed, history_lag_s=lag)
    np.testing.assert_array_equal(base[i], again[i])


def test_length_features_refuse_a_zero_lag_and_unsorted_arrivals():
    arrival, prompt, output = _stream(0, 10)
    with pytest.raises(ValueError, match="history_lag_s"):
        length_features(arrival, prompt, output, history_lag_s=0)
    with pytest.raises(ValueError, match="ascending"):
        length_features(arrival[::-1], prompt, output)


def _jobs(seed: int, n: int = 250):
    rng = np.random.default_rng(seed)
    submit = np.sort(rng.uniform(0, 5000, n)).round()
    dur = rng.lognormal(5, 1.5, n).round()
    gpus = rng.choice([1.0, 2.0, 8.0], n)
    user = rng.choice(["a", "b", "c", "d"], n).astype(object)
    group = rng.choice(["vc1", "vc2"], n).astype(object)
    status = rng.choice(["completed", "failed", "killed"], n).astype(object)
    return submit, dur, gpus, user, group, status


def test_duration_history_matches_a_brute_force_loop():
    submit, dur, gpus, user, group, status = _jobs(3)
    end = submit + dur
    X = duration_features(submit, dur, gpus, user=user, group=group, group_index={"vc1": 0, "vc2": 1},
                          status=status, window=10).astype(np.float64)
    for i in range(len(submit)):
        ended = [j for j in range(len(submit)) if end[j] < submit[i]]
        mine = [j for j in ended if user[j] == user[i]]
        mine_sized = [j for j in mine if gpus[j] == gpus[i]]
        vc_sized = [j for j in ended if group[j] == group[i] and gpus[j] == gpus[i]]
        recent = sorted(ended, key=lambda j: (end[j], j))[-10:]
        last_mine = sorted(mine, key=lambda j: (end[j], j))[-1] if mine else None
        want = {
            "user_count": min(len(mine), COUNT_CAP),
            "user_mean_log_s": np.log1p(dur[mine]).mean() if mine else np.nan,
            "user_last_log_s": np.log1p(dur[last_mine]) if mine else np.nan,
            "user_fail_rate": np.isin(status[mine], ["failed", "killed"]).mean() if mine else np.nan,
            "user_size_mean_log_s": np.log1p(dur[mine_sized]).mean() if mine_sized else np.nan,
            "group_size_mean_log_s": np.log1p(dur[vc_sized]).mean() if vc_sized else np.nan,
            "group_size_count": min(len(vc_sized), COUNT_CAP),
            "recent_mean_log_s": np.log1p(dur[recent]).mean() if recent else np.nan,
            "group": {"vc1": 0, "vc2": 1}[group[i]], "num_gpus": gpus[i],
        }
        for name, value in want.items():
            np.testing.assert_allclose(X[i, D[name]], value, rtol=1e-4, atol=1e-4, equal_nan=True, err_msg=f"{name} row {i}")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), i=st.integers(0, 149))
def test_a_job_never_sees_its_own_or_later_durations(seed, i):
    submit, dur, gpus, user, group, status = _jobs(seed, 150)
    base = duration_features(submit, dur, gpus, user=user, group=group, status=status)
    changed_dur, changed_status = dur.copy(), status.copy()
    later = submit >= submit[i]  # itself and every job submitted at or after it: all end after its submit
    changed_dur[later] = changed_dur[later] * 3 + 1
    changed_status[later] = "failed"
    again = duration_features(submit, changed_dur, gpus, user=user, group=group, status=changed_status)
    np.testing.assert_array_equal(base[i], again[i])


def test_traces_without_users_or_groups_give_nan_user_features_and_one_cluster_history():
    submit, dur, gpus, *_ = _jobs(5, 50)
    X = duration_features(submit, dur, gpus)
    assert np.all(np.isnan(X[:, D["user_mean_log_s"]])) and np.all(X[:, D["user_count"]] == 0)
    assert np.all(np.isnan(X[:, D["group"]]))
    assert np.isfinite(X[-1, D["group_size_mean_log_s"]])  # history by GPU count over the whole cluster


def test_clock_gives_local_hour_and_weekday_across_dst():
    la = ZoneInfo("America/Los_Angeles")
    origin = datetime(2017, 11, 4, 12, 0, tzinfo=la).timestamp()
    t = np.array([0.0, 86400.0, 2 * 86400.0])  # Sat noon PDT, then 24 h later is 11:00 PST (Sun), Mon 11:00
    hour, weekday = Clock(origin, "America/Los_Angeles").hour_and_weekday(t)
    for k, s in enumerate(t):
        local = datetime.fromtimestamp(origin + s, la)
        assert hour[k] == pytest.approx(local.hour + local.minute / 60)
        assert weekday[k] == local.weekday()


def test_length_metrics_by_hand():
    y = np.array([10, 100, 300, 1000])
    pred = np.array([40, 260, 300, 500])
    m = length_metrics(y, pred, bucket_edges=(64, 256))
    assert m["mae"] == pytest.approx((30 + 160 + 0 + 500) / 4)
    assert m["acc50"] == 0.5 and m["acc100"] == 0.5
    assert m["bucket_acc"] == pytest.approx(3 / 4)  # 40|10 <=64; 260 >256 but 100 in (64,256]; 300,300; 500|1000 >256
    assert m["spearman"] == pytest.approx(1.0) and m["kendall_tau"] == pytest.approx(1.0)
    assert length_metrics(y, np.full(4, 50.0))["kendall_tau"] == 0.0  # a constant has no order


def test_window_kendall_averages_windows_of_consecutive_arrivals():
    y = np.arange(64, dtype=float)
    pred = np.concatenate([np.arange(32), -np.arange(32)]).astype(float)  # first window right, second reversed
    assert window_kendall(y, pred, window=32) == pytest.approx(0.0)
    assert window_kendall(y, y, window=32) == pytest.approx(1.0)


def test_duration_metrics_bands_by_hand():
    y = np.array([100.0, 100.0, 100.0, 100.0])
    pred = np.array([105.0, 140.0, 190.0, 5000.0])
    m = duration_metrics(y, pred)
    assert (m["within_10"], m["within_50"], m["within_100"], m["within_1000"]) == (0.25, 0.5, 0.75, 0.75)
    assert m["mae_log"] == pytest.approx(np.mean(np.abs(np.log1p(pred) - np.log1p(y))))
