import hashlib
import logging

import numpy as np
import pytest

from wakeword.audio import SAMPLE_RATE, AudioError, load_audio, write_audio
from wakeword.data.augment import (
    AugmentSettings,
    NoiseBank,
    apply_rir,
    augment_audio,
    augment_dataset,
    babble,
    build_noise_bank,
    build_rir_bank,
    change_speed,
    coloured_noise,
    mix_at_snr,
    normalise_rir,
    simulate_rir,
    speech_bounds,
    time_shift,
)
from wakeword.data.clips import DataSet

QUIET = dict(
    p_noise=0.0, p_rir=0.0, p_speed=0.0, p_channel=0.0, gain_db=(0.0, 0.0), shift_seconds=0.0, n_simulated_rooms=0
)


def syllables(seconds: float, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """Speech-like stand-in: harmonic tones with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = rng.uniform(100, 220)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t) ** 2
    signal = envelope * voiced + 0.05 * rng.standard_normal(len(t))
    return (amplitude * signal / np.max(np.abs(signal))).astype(np.float32)


def padded(speech: np.ndarray, before: float, after: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * SAMPLE_RATE)), speech, np.zeros(int(after * SAMPLE_RATE))]).astype(
        np.float32
    )


def measured_snr(speech_only: np.ndarray, noise_part: np.ndarray) -> float:
    return 10 * np.log10(np.mean(speech_only.astype(np.float64) ** 2) / np.mean(noise_part.astype(np.float64) ** 2))


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0])
def test_mix_at_snr_hits_target_and_ignores_padding(kind, snr_db):
    rng = np.random.default_rng(1)
    speech = syllables(0.6, seed=2)
    talkers = [syllables(0.8, seed=s) for s in range(5)]
    n = len(speech) + SAMPLE_RATE  # padded with 0.3 s + 0.7 s of silence
    noise = babble(n, talkers, rng) if kind == "babble" else coloured_noise(n, kind, rng)
    for signal, region in [(speech, slice(None)), (padded(speech, 0.3, 0.7), slice(4800, 4800 + len(speech)))]:
        mixed = mix_at_snr(signal, noise, snr_db)
        # speech power over the known speech region only, noise power over the whole mix
        assert measured_snr(signal[region], mixed - signal) == pytest.approx(snr_db, abs=0.5)


def test_augment_dataset_snr_sources_untouched_and_provenance(tmp_path):
    src = DataSet.create(tmp_path / "src")
    a = src.add_audio(padded(syllables(0.5, 3, amplitude=0.1), 0.2, 0.3), {"hey computer": 1}, speaker="ann")
    b = src.add_audio(padded(syllables(0.7, 4, amplitude=0.1), 0.1, 0.1), {"hey computer": 0}, meta={"k": 1})
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "src").rglob("*") if p.is_file()}
    settings = AugmentSettings(**{**QUIET, "p_noise": 1.0, "snr_db": (0.0, 15.0)})
    dst = DataSet.create(tmp_path / "dst")
    made = augment_dataset(src, dst, n_copies=3, settings=settings, seed=7)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "src").rglob("*") if p.is_file()}
    assert after == before
    assert len(made) == 6 and [c.id for c in dst.clips()] == [c.id for c in made]
    parents = {a.id: a, b.id: b}
    snrs = set()
    for clip in made:
        parent = parents[clip.meta["parent"]]
        assert clip.source == "augmented" and clip.labels == parent.labels and clip.speaker == parent.speaker
        assert clip.meta["parent_dataset"] == str(src.root)
        dry = src.load(parent)
        start, end = speech_bounds(dry)
        noise_part = dst.load(clip) - dry
        snr = clip.meta["augment"]["snr_db"]
        snrs.add(snr)
        assert measured_snr(dry[start:end], noise_part) == pytest.approx(snr, abs=0.5)
    assert len(snrs) == 6  # every copy drew its own SNR
    assert made[3].meta["k"] == 1  # parent meta (e.g. session group) is carried over


def test_augment_audio_reproducible_per_seed():
    settings = AugmentSettings(n_simulated_rooms=2, p_rir=1.0, p_speed=1.0, p_noise=1.0)
    noise_bank = build_noise_bank(settings, [syllables(0.5, s) for s in range(3)])
    rir_bank = build_rir_bank(settings, seed=0)
    audio = padded(syllables(0.5), 0.3, 0.3)

    def run(seed):
        applied = {}
        out = augment_audio(audio, np.random.default_rng(seed), settings, noise_bank, rir_bank, applied=applied)
        return out, applied

    first, first_applied = run(11)
    again, again_applied = run(11)
    _, other_applied = run(12)
    np.testing.assert_array_equal(first, again)
    assert first_applied == again_applied and set(first_applied) == {
        "speed",
        "rir",
        "shift_seconds",
        "noise",
        "snr_db",
        "gain_db",
    }
    assert other_applied != first_applied
    assert np.all(np.isfinite(first)) and np.max(np.abs(first)) <= 0.99


def test_augment_dataset_reproducible(tmp_path):
    src = DataSet.create(tmp_path / "src")
    src.add_audio(padded(syllables(0.5), 0.2, 0.2), {"w": 1})
    settings = AugmentSettings(n_simulated_rooms=2)
    runs = {}
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        dst = DataSet.create(tmp_path / name)
        runs[name] = [dst.load(c) for c in augment_dataset(src, dst, 2, settings, seed=seed)]
    for x, y in zip(runs["a"], runs["b"], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not any(len(x) == len(y) and np.allclose(x, y) for x, y in zip(runs["a"], runs["c"], strict=True))


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.25])
def test_change_speed_scales_duration_and_pitch(factor):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    out = change_speed(tone, factor)
    assert len(out) == pytest.approx(len(tone) / factor, abs=2)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(out)
    assert peak_hz == pytest.approx(500 * factor, abs=3)  # resampling: pitch moves with speed


def test_simulated_rir_normalised_and_reverberates():
    rng = np.random.default_rng(0)
    rirs = [normalise_rir(simulate_rir(rng)) for _ in range(3)]
    dry = padded(syllables(0.4), 0.1, 0.0)
    for rir in rirs:
        assert np.sum(rir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-4)
        assert np.argmax(np.abs(rir)) <= SAMPLE_RATE // 1000  # direct path first
        wet = apply_rir(dry, rir)
        assert len(wet) == len(dry) + len(rir) - 1 and np.all(np.isfinite(wet))
        assert np.max(np.abs(wet)) <= 0.99 + 1e-6
        rms_dry, rms_wet = np.sqrt(np.mean(dry**2)), np.sqrt(np.mean(wet[: len(dry)] ** 2))
        assert rms_wet == pytest.approx(rms_dry, rel=0.01) or np.max(np.abs(wet)) > 0.98
        assert np.sqrt(np.mean(wet[len(dry) : len(dry) + 800] ** 2)) > 1e-3 * rms_dry  # a tail rings on
    assert len({len(r) for r in rirs}) == 3  # rooms differ


def test_rir_and_noise_from_folders(tmp_path, caplog):
    rng = np.random.default_rng(0)
    decay = np.exp(-np.arange(4000) / 600.0) * rng.standard_normal(4000)
    rir = np.concatenate([np.zeros(300), [0.9], 0.2 * decay]).astype(np.float32)
    write_audio(tmp_path / "rirs" / "hall.wav", rir)
    write_audio(tmp_path / "noise" / "fan.wav", 0.1 * coloured_noise(8000, "brown", rng))
    (tmp_path / "noise" / "broken.wav").write_bytes(b"RIFF not really")
    settings = AugmentSettings(
        rir_dirs=[str(tmp_path / "rirs")], noise_dirs=[str(tmp_path / "noise")], n_simulated_rooms=1
    )
    assert settings.rir_dirs == (str(tmp_path / "rirs"),)
    rirs = build_rir_bank(settings)
    assert rirs.names == ["file:hall.wav", "room:0"]
    assert np.argmax(np.abs(rirs.rirs[0])) <= 16  # the 300-sample delay is gone
    with caplog.at_level(logging.WARNING):
        noises = build_noise_bank(settings, [syllables(0.3)])
    assert "broken.wav" in caplog.text and noises.kinds() == ["file"]
    noise, name = noises.sample(20000, rng)  # longer than the file: tiled
    assert name == "file:fan.wav" and noise.shape == (20000,)
    with pytest.raises(AudioError, match="not a folder"):
        build_noise_bank(AugmentSettings(noise_dirs=[str(tmp_path / "missing")]))


@pytest.mark.parametrize(("colour", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_coloured_noise_spectral_slope(colour, slope):
    noise = coloured_noise(2**16, colour, np.random.default_rng(0))
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-3)
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / SAMPLE_RATE)
    band = (freqs > 100) & (freqs < 6000)
    fitted = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.15)


def test_noise_bank_without_folders_offers_colours_and_babble():
    assert NoiseBank().kinds() == ["white", "pink", "brown"]
    bank = NoiseBank(babble_sources=[syllables(0.4, s) for s in range(3)])
    rng = np.random.default_rng(0)
    names = {bank.sample(1000, rng)[1] for _ in range(40)}
    assert names == {"white", "pink", "brown", "babble"}


def test_speech_bounds_and_shift_never_cut_speech():
    speech = syllables(0.5)
    audio = padded(speech, 0.25, 0.15)
    start, end = speech_bounds(audio)
    assert start == pytest.approx(4000, abs=160) and end == pytest.approx(4000 + len(speech), abs=160)
    noisy = audio + 0.01 * coloured_noise(len(audio), "white", np.random.default_rng(0))  # floor at about -27 dB
    assert speech_bounds(noisy) == pytest.approx((start, end), abs=320)
    for shift in (-8000, -1600, 1600, 8000):
        moved = time_shift(audio, shift)
        new_start, new_end = speech_bounds(moved)
        assert len(moved) == len(audio) and new_end - new_start == end - start
        expected = min(shift, len(audio) - end) if shift > 0 else max(shift, -start)
        assert new_start - start == pytest.approx(expected, abs=160)
    assert speech_bounds(np.zeros(1000, dtype=np.float32)) == (0, 1000)


def test_speech_bounds_leave_out_clicks_away_from_the_word():
    """A real recording with a click 1 s before the word and a knock 1 s after it: the word is the loudest
    utterance; sounds further than MAX_SPEECH_GAP_SECONDS from it are not part of it (hand-placed)."""
    rng = np.random.default_rng(0)
    word = syllables(0.6)
    audio = padded(word, 1.3, 1.1) + 0.002 * rng.standard_normal(int(3.0 * SAMPLE_RATE)).astype(np.float32)
    audio[int(0.2 * SAMPLE_RATE) : int(0.22 * SAMPLE_RATE)] += 0.05  # click
    audio[int(2.8 * SAMPLE_RATE) : int(2.85 * SAMPLE_RATE)] += 0.03 * rng.standard_normal(800)  # knock
    start, end = speech_bounds(audio)
    assert start == pytest.approx(1.3 * SAMPLE_RATE, abs=320) and end == pytest.approx(1.9 * SAMPLE_RATE, abs=320)
    # a pause inside one phrase is bridged: "hey" 0.3 s before "computer" stays in
    phrase = np.concatenate([syllables(0.2), np.zeros(int(0.3 * SAMPLE_RATE), np.float32), syllables(0.5, 1)])
    assert speech_bounds(padded(phrase, 0.5, 0.5)) == pytest.approx((8000, 8000 + len(phrase)), abs=320)


def test_speech_bounds_in_a_room_whose_level_wanders():
    """A real room's background wanders by +-8 dB every 10 ms around -60 dB; the word (-20 dB) sits at
    1.2-1.8 s of 3 s. Frames 10 dB above the background's 10th percentile are still the room, and the old
    rule took the whole clip as the utterance; the median frame is the background here (hand-placed)."""
    rng = np.random.default_rng(1)
    n_frames = int(3.0 * SAMPLE_RATE) // 160
    level_db = -60.0 + rng.uniform(-8.0, 8.0, n_frames).repeat(160)
    room = (10.0 ** (level_db / 20.0) * rng.standard_normal(len(level_db))).astype(np.float32)
    word = syllables(0.6)
    word *= 0.1 / np.sqrt(np.mean(word**2))  # -20 dB
    audio = room + padded(word, 1.2, 1.2)
    start, end = speech_bounds(audio)
    assert start == pytest.approx(1.2 * SAMPLE_RATE, abs=480) and end == pytest.approx(1.8 * SAMPLE_RATE, abs=480)


def test_settings_validated():
    with pytest.raises(ValueError, match="snr_db"):
        AugmentSettings(snr_db=(10.0, 0.0))
    with pytest.raises(ValueError, match="p_rir"):
        AugmentSettings(p_rir=1.5)
    with pytest.raises(ValueError, match="unknown augmentation step"):
        augment_audio(syllables(0.1), np.random.default_rng(0), AugmentSettings(), steps=("echo",))


def test_gain_only_chain_is_exact_and_files_round_trip(tmp_path):
    audio = padded(syllables(0.3, amplitude=0.2), 0.1, 0.1)
    settings = AugmentSettings(**{**QUIET, "gain_db": (-6.0, -6.0)})
    out = augment_audio(audio, np.random.default_rng(0), settings)
    np.testing.assert_allclose(out, audio * 10 ** (-6 / 20), atol=1e-6)
    write_audio(tmp_path / "x.wav", out)
    np.testing.assert_allclose(load_audio(tmp_path / "x.wav"), out, atol=1e-4)


def test_recording_channel_colours_band_limits_and_is_seeded():
    from wakeword.data.augment import mu_law_round_trip, recording_channel

    rng = np.random.default_rng(0)
    white = (0.1 * rng.standard_normal(4 * SAMPLE_RATE)).astype(np.float32)
    spectra, settings = [], []
    for seed in range(40):
        applied: dict = {}
        out = recording_channel(white, np.random.default_rng(seed), applied)
        assert out.dtype == np.float32 and out.shape == white.shape and np.abs(out).max() <= 0.99 + 1e-6
        again = recording_channel(white, np.random.default_rng(seed), {})
        np.testing.assert_array_equal(out, again)  # seeded: the same draw gives the same channel
        spectra.append(np.abs(np.fft.rfft(out)) ** 2)
        settings.append(applied["channel"])
    freqs = np.fft.rfftfreq(len(white), 1 / SAMPLE_RATE)
    band_limited = [s for s, c in zip(spectra, settings, strict=True) if "lowpass_hz" in c]
    assert 10 <= len(band_limited) <= 35  # about 60% of draws are band limited
    for spectrum, channel in zip(spectra, settings, strict=True):
        if "lowpass_hz" in channel:  # an octave above the cut-off, at least 20 dB down against the pass band
            above = spectrum[freqs > min(2 * channel["lowpass_hz"], 7900)].mean()
            assert 10 * np.log10(above / spectrum[(freqs > 500) & (freqs < 3000)].mean()) < -20
        low = spectrum[freqs < channel["highpass_hz"] / 4].mean()  # two octaves under the high-pass
        assert 10 * np.log10(low / spectrum[(freqs > 500) & (freqs < 3000)].mean()) < -12
    # mu-law at 8 bits: about 38 dB signal-to-quantisation-noise, not exact, not destroyed
    speech_like = syllables(1.0)
    error = mu_law_round_trip(speech_like) - speech_like
    snr = 10 * np.log10(np.mean(speech_like**2) / np.mean(error**2))
    assert 25 < snr < 50
