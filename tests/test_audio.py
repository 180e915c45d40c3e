import io
import wave

import numpy as np
import pytest
import soundfile as sf

from wakeword.audio import SAMPLE_RATE, AudioError, load_audio, resample, write_audio


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)]


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(tmp_path, rate):
    path = tmp_path / "x.wav"
    sf.write(path, tone(1.0, rate), rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert abs(len(audio) - SAMPLE_RATE) <= 1
    assert abs(dominant_frequency(audio) - 440.0) < 2.0
    # amplitude survives band-limited resampling (a 440 Hz tone is far below every Nyquist here)
    assert abs(np.abs(audio[2000:-2000]).max() - 0.5) < 0.02


def test_stereo_is_averaged(tmp_path):
    left, right = np.full(1600, 0.25, np.float32), np.full(1600, -0.75, np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), -0.25, atol=1e-6)


@pytest.mark.parametrize(
    ("subtype", "fmt", "suffix"),
    [
        ("PCM_U8", "WAV", ".wav"),
        ("PCM_16", "WAV", ".wav"),
        ("PCM_24", "FLAC", ".flac"),
        ("PCM_32", "WAV", ".wav"),
        ("FLOAT", "WAV", ".wav"),
        ("VORBIS", "OGG", ".ogg"),
        ("MPEG_LAYER_III", "MP3", ".mp3"),
    ],
)
def test_sample_formats_scale_to_unit_range(tmp_path, subtype, fmt, suffix):
    path = tmp_path / f"x{suffix}"
    sf.write(path, tone(0.5, SAMPLE_RATE, amp=0.5), SAMPLE_RATE, subtype=subtype, format=fmt)
    audio = load_audio(path)
    assert abs(np.abs(audio[1000:-1000]).max() - 0.5) < 0.05
    assert abs(dominant_frequency(audio) - 440.0) < 3.0


def test_int16_values_exact(tmp_path):
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(SAMPLE_RATE)
        handle.writeframes(np.array([16384, -32768] * 400, dtype="<i2").tobytes())
    audio = load_audio(path)
    np.testing.assert_array_equal(audio[:2], [0.5, -1.0])


def test_bytes_and_stream_input():
    buffer = io.BytesIO()
    sf.write(buffer, tone(0.2, 8000), 8000, format="WAV")
    assert abs(len(load_audio(buffer.getvalue())) - 3200) <= 1
    buffer.seek(0)
    assert abs(len(load_audio(buffer)) - 3200) <= 1


def test_missing_file_named(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory_refused(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        load_audio(path)


def test_header_only_wav_has_no_samples(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"header\.wav: contains no samples"):
        load_audio(path)


def test_one_sample_too_short(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, np.array([0.1], np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="too short"):
        load_audio(path)


def test_garbage_bytes_unreadable(tmp_path):
    path = tmp_path / "junk.flac"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"junk\.flac: unreadable"):
        load_audio(path)


def test_truncated_flac(tmp_path):
    path = tmp_path / "cut.flac"
    sf.write(path, tone(1.0, SAMPLE_RATE), SAMPLE_RATE, format="FLAC")
    path.write_bytes(path.read_bytes()[:60])  # header survives, frames do not
    with pytest.raises(AudioError, match=r"cut\.flac"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    audio = tone(0.2, SAMPLE_RATE)
    audio[100] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"bad\.wav: contains NaN or infinite"):
        load_audio(path)


def test_write_audio_round_trip_and_no_temp_left(tmp_path):
    audio = tone(0.3, SAMPLE_RATE)
    path = write_audio(tmp_path / "sub" / "a.wav", audio)
    np.testing.assert_allclose(load_audio(path), audio, atol=1 / 32767 + 1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]


def test_resample_identity_returns_float32():
    audio = tone(0.1, SAMPLE_RATE).astype(np.float64)
    out = resample(audio, SAMPLE_RATE)
    assert out.dtype == np.float32 and len(out) == len(audio)
