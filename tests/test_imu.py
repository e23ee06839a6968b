"""Properties and error cases of harlib.imu (fast: well under a second of compute)."""
import math, pickle
import numpy as np
import pytest
from scipy import integrate, signal
from harlib import imu
from harlib.imu import BadRecording, SensorSpec

RNG = np.random.default_rng(0)

# --- units -------------------------------------------------------------------------------------------------
def test_counts_to_si_matches_reference():
    raw = RNG.integers(-32768, 32767, (500, 6))
    ref = np.c_[raw[:, :3] / 4096 * 9.80665, np.deg2rad(raw[:, 3:] / 32.8)]
    np.testing.assert_allclose(imu.counts_to_si(raw, 4096, 32.8), ref, rtol=1e-12)

@pytest.mark.parametrize('a,b', [('g', 'm/s2'), ('deg/s', 'rad/s')])
def test_convert_round_trip(a, b):
    x = RNG.normal(size=(50, 3))
    np.testing.assert_allclose(imu.convert(imu.convert(x, a, b), b, a), x, rtol=1e-12)

def test_spec_order_and_signs():
    x = RNG.normal(size=(300, 6))
    spec = SensorSpec(50, order=(3, 4, 5, 0, 1, 2), signs=(1, -1, 1, 1, 1, -1))
    r = imu.to_canonical(x, spec)
    exp = x[:, [3, 4, 5, 0, 1, 2]] * [1, -1, 1, 1, 1, -1]
    np.testing.assert_allclose(r.x, exp, rtol=1e-6, atol=1e-6)
    assert r.x.dtype == np.float32 and r.valid.all() and r.rate == imu.RATE

# --- resampling --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('rin', [25, 100, 200, 30])
def test_resample_uniform_is_resample_poly(rin):
    x = RNG.normal(size=(rin * 6, 6))
    y = imu.resample_uniform(x, rin, 50)
    assert len(y) == math.ceil(len(x) * 50 / rin)
    up, down = imu._ratio(rin, 50)
    np.testing.assert_allclose(y, signal.resample_poly(x, up, down, axis=0, padtype='line'))

def test_resample_irregular_gap_and_grid():
    t = np.r_[np.arange(0, 3000, 20.0), np.arange(3600, 6000, 20.0)]
    x = np.c_[np.sin(t / 1000), np.cos(t / 1000)]
    grid, xg, valid = imu.resample_irregular(t, x, 50, max_gap_s=0.1)
    np.testing.assert_allclose(np.diff(grid), 0.02)
    inside = (grid > 2.98 + 1e-9) & (grid < 3.6 - 1e-9)
    np.testing.assert_array_equal(~valid, inside)
    np.testing.assert_allclose(xg[valid], np.c_[np.sin(grid), np.cos(grid)][valid], atol=1e-9)
    assert all(valid[s:s + 100].all() for s in imu.window_starts(valid, 100, 50))

# --- signal ------------------------------------------------------------------------------------------------
def test_median_filter_reference():
    x = RNG.normal(size=(400, 6))
    p = np.pad(x, [(2, 2), (0, 0)], mode='edge')
    ref = np.median(np.lib.stride_tricks.sliding_window_view(p, 5, axis=0), axis=-1)
    np.testing.assert_allclose(imu.median_filter(x, 5), ref)

def test_zscore_given_stats_and_zero_std():
    x = RNG.normal(3, 2, size=(1000, 6)); x[:, 5] = 4.0
    z, st = imu.zscore(x)
    assert np.isfinite(z).all() and np.all(z[:, 5] == 0)
    np.testing.assert_allclose(z[:, :5].mean(0), 0, atol=1e-5); np.testing.assert_allclose(z[:, :5].std(0), 1, atol=1e-4)
    z2, st2 = imu.zscore(x[:10], stats={k: v.tolist() for k, v in st.items()})  # stats survive JSON-like lists
    np.testing.assert_allclose(z2, z[:10], atol=1e-6)

def test_integrate_gyro_is_cumulative_trapezoid():
    g = RNG.normal(size=(300, 3))
    ref = np.array([[np.trapezoid(g[:i + 1, c], dx=0.02) for c in range(3)] for i in range(300)])
    np.testing.assert_allclose(imu.integrate_gyro(g, 50), ref, atol=1e-12)

def test_preprocess_is_median_then_zscore():
    x = RNG.normal(size=(500, 6))
    p, st = imu.preprocess(x)
    m = imu.median_filter(x)
    np.testing.assert_allclose(p, (m - m.mean(0)) / m.std(0), atol=1e-5)

# --- windows -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('T', [0, 249, 250, 251, 1000, 1249])
@pytest.mark.parametrize('size,stride', [(250, 250), (250, 125), (10, 3)])
def test_window_counts_and_views(T, size, stride):
    x = RNG.normal(size=(T, 6))
    w = imu.sliding_windows(x, size, stride)
    starts = imu.window_starts(T, size, stride)
    assert len(w) == len(starts) == imu.n_windows(T, size, stride) == (0 if T < size else (T - size) // stride + 1)
    if len(w):
        assert np.shares_memory(w, x) and not w.flags.writeable
        np.testing.assert_array_equal(w, np.stack([x[s:s + size] for s in starts]))

def test_window_time_round_trip():
    starts = imu.window_starts(50 * 3600, 250, 125)
    s, e = imu.window_seconds(starts, 250, 50, t0_s=12.34)
    np.testing.assert_allclose(e - s, 5.0)
    np.testing.assert_array_equal(imu.seconds_to_start(s, 50, t0_s=12.34), starts)

def test_pad_crop():
    x = np.arange(10)
    assert list(imu.pad_crop(x, 4, center=True)) == [3, 4, 5, 6]
    assert list(imu.pad_crop(x[:2], 5, mode='constant')) == [0, 1, 0, 0, 0]

# --- errors ------------------------------------------------------------------------------------------------
def test_bad_recording_is_value_error_and_picklable():
    e = BadRecording('a.csv', 'broken')
    assert isinstance(e, ValueError) and str(e) == 'a.csv: broken'
    assert str(pickle.loads(pickle.dumps(e))) == 'a.csv: broken'

def test_nan_runs_interpolated_or_error():
    x = RNG.normal(size=(600, 6)); x[100:103, 2] = np.nan; x[200, 4] = np.inf
    r = imu.to_canonical(x, SensorSpec(50), name='ok.csv', max_nan_s=0.1)
    assert np.isfinite(r.x).all()
    np.testing.assert_allclose(r.x[101, 2], np.interp(101, [99, 103], [x[99, 2], x[103, 2]]), rtol=1e-5)
    x[300:310, 0] = np.nan
    with pytest.raises(BadRecording, match=r'long\.csv: 10 NaN/inf samples in a row in column 0 from sample 300'):
        imu.to_canonical(x, SensorSpec(50), name='long.csv', max_nan_s=0.1)

def test_too_short():
    with pytest.raises(BadRecording, match=r'short\.csv: too short: 200 samples'):
        imu.to_canonical(np.zeros((100, 6)), SensorSpec(25), name='short.csv')

@pytest.mark.parametrize('shape', [(300, 5), (300, 7), (300,), (2, 300, 6)])
def test_wrong_channels(shape):
    with pytest.raises(BadRecording, match=r'^chan\.csv: expected'):
        imu.to_canonical(np.zeros(shape), SensorSpec(50), name='chan.csv')

def test_non_monotonic_timestamps():
    t = np.arange(0, 10000, 20.0); t[100] = t[98]
    with pytest.raises(BadRecording, match=r'ts\.csv: timestamps are not monotonic: they go back at sample 100 \(1980 ms -> 1960 ms\)'):
        imu.to_canonical(np.zeros((500, 6)), SensorSpec(50), timestamps_ms=t, name='ts.csv')
    with pytest.raises(BadRecording, match='timestamps for'):
        imu.resample_irregular(t[:-1], np.zeros((500, 6)), name='n.csv')

def test_bad_spec():
    with pytest.raises(ValueError, match='gyro_lsb'): SensorSpec(50, gyro_unit='counts')
    with pytest.raises(ValueError, match='unknown acc_unit'): SensorSpec(50, acc_unit='furlong/s2')

# --- benchmark stays correct (the quick case: a few seconds) -----------------------------------------------
def test_bench_imu_quick_same_windows():
    from harlib.bench import imu as bench_imu
    f = bench_imu.run(quick=True)
    assert f['same_windows'] and f['windows'] == 120 and f['max_abs_diff'] < 1e-4
    assert f['harlib_windows_per_s'] > f['naive_windows_per_s']
