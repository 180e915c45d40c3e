import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wakeword.audio import SAMPLE_RATE, WINDOW_SECONDS
from wakeword.data.augment import AugmentSettings, speech_bounds
from wakeword.data.clips import Clip, DataSet
from wakeword.data.dataset import WakeWordDataset, place_end, split_by_group

HEY, JARVIS = "hey computer", "ok jarvis"
QUIET = dict(p_noise=0.0, p_rir=0.0, p_speed=0.0, gain_db=(0.0, 0.0), shift_seconds=0.0, n_simulated_rooms=0)


def burst(before: float, speech: float, after: float, seed: int = 0) -> np.ndarray:
    """A noise burst ("speech") between stretches of silence."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int((before + speech + after) * SAMPLE_RATE), dtype=np.float32)
    out[int(before * SAMPLE_RATE) : int((before + speech) * SAMPLE_RATE)] = 0.3 * rng.uniform(
        -1, 1, int(speech * SAMPLE_RATE)
    )
    return out


@pytest.fixture
def data(tmp_path):
    ds = DataSet.create(tmp_path / "ds")
    ds.add_audio(burst(0.2, 0.6, 0.5, 1), {HEY: 1}, speaker="ann")  # speech ends at 0.8 s
    ds.add_audio(burst(0.1, 2.0, 0.2, 2), {HEY: 1}, speaker="bob")  # longer than the window
    ds.add_audio(burst(0.3, 0.4, 0.1, 3), {HEY: 0, JARVIS: 1}, speaker="cy")
    ds.add_audio(burst(0.0, 0.5, 0.0, 4), {JARVIS: 0}, speaker="dee")
    ds.add_audio(burst(0.0, 4.6, 0.0, 5), {HEY: 0}, speaker="eve")  # long negative: 3 windows
    ds.add_audio(burst(0.0, 0.3, 0.0, 6), {"other word": 1}, speaker="fay")  # labelled for neither word
    return ds


def end_in_window(window: np.ndarray) -> float:
    return speech_bounds(window)[1] / SAMPLE_RATE


def test_windows_labels_and_masks(data):
    dataset = WakeWordDataset(data, [HEY, "Ok  Jarvis"], train=False)
    assert dataset.n_unlabelled == 1 and len(dataset) == 4 + 3
    window_samples = int(WINDOW_SECONDS * SAMPLE_RATE)
    by_speaker = {clip.id: clip.speaker for clip in data.clips()}
    seen = {}
    for item in dataset:
        assert item["audio"].shape == (window_samples,) and item["audio"].dtype == torch.float32
        seen.setdefault(by_speaker[item["clip_id"]], (item["labels"].tolist(), item["mask"].tolist()))
    assert seen == {
        "ann": ([1.0, 0.0], [1.0, 0.0]),
        "bob": ([1.0, 0.0], [1.0, 0.0]),
        "cy": ([0.0, 1.0], [1.0, 1.0]),
        "dee": ([0.0, 0.0], [0.0, 1.0]),
        "eve": ([0.0, 0.0], [1.0, 0.0]),
    }
    assert dataset.counts() == {HEY: {"positive": 2, "negative": 2}, JARVIS: {"positive": 1, "negative": 1}}


@pytest.mark.parametrize("window_seconds", [1.0, 1.5])
def test_positive_speech_ends_in_last_part_of_window(data, window_seconds):
    fixed = WakeWordDataset(data, [HEY], window_seconds, train=False)
    random = WakeWordDataset(data, [HEY], window_seconds, train=True, seed=3)
    positives = [i for i in range(len(fixed)) if fixed[i]["labels"][0] == 1]
    assert len(positives) == 2
    for i in positives:
        assert end_in_window(fixed[i]["audio"].numpy()) == pytest.approx(window_seconds - 0.25, abs=0.011)
        ends = [end_in_window(random[i]["audio"].numpy()) for _ in range(12)]
        assert all(window_seconds - 0.41 <= e <= window_seconds - 0.09 for e in ends)
        assert max(ends) - min(ends) > 0.05  # train mode really draws the offset
    # the 2 s positive is cropped at its start and fills the window up to its speech end
    long_window = fixed[positives[1]]["audio"].numpy()
    assert speech_bounds(long_window)[0] == 0


def test_speed_perturbation_keeps_end_in_place(data):
    settings = AugmentSettings(**{**QUIET, "p_speed": 1.0, "speed": (0.8, 1.2)})
    dataset = WakeWordDataset(data, [HEY], train=True, augment=settings, seed=0)
    for _ in range(10):
        window, applied = dataset.window(0)
        assert 0.8 <= applied["speed"] <= 1.2
        assert WINDOW_SECONDS - 0.42 <= end_in_window(window) <= WINDOW_SECONDS - 0.08


def test_full_augmentation_gives_finite_varied_windows(data):
    dataset = WakeWordDataset(data, [HEY, JARVIS], train=True, augment=AugmentSettings(n_simulated_rooms=2), seed=0)
    assert "babble" in dataset.noise_bank.kinds() and len(dataset.rir_bank) == 2
    plain = WakeWordDataset(data, [HEY, JARVIS], train=True, seed=0)
    windows = [dataset[0]["audio"].numpy() for _ in range(4)]
    assert all(np.all(np.isfinite(w)) and np.max(np.abs(w)) <= 0.99 for w in windows)
    assert not np.allclose(windows[0], windows[1])
    assert not np.allclose(windows[0], plain[0]["audio"].numpy())
    eval_set = WakeWordDataset(data, [HEY], train=False, augment=AugmentSettings())
    assert eval_set.augment is None  # evaluation windows are never augmented
    np.testing.assert_array_equal(eval_set[0]["audio"].numpy(), eval_set[0]["audio"].numpy())


def test_long_negative_gives_several_distinct_windows(data):
    dataset = WakeWordDataset(data, [HEY], train=False)
    eve = next(c.id for c in data.clips() if c.speaker == "eve")
    windows = [item["audio"].numpy() for item in dataset if item["clip_id"] == eve]
    assert len(windows) == 3
    source = data.load(data.get(eve))
    starts = []
    for window in windows:  # each is a real crop of the clip, not padding
        assert np.mean(window == 0) < 0.01
        matches = np.lib.stride_tricks.sliding_window_view(source, 16) == window[:16]
        start = int(np.flatnonzero(matches.all(axis=1))[0])
        np.testing.assert_array_equal(source[start : start + len(window)], window)
        starts.append(start)
    assert starts == sorted(starts) and starts[0] < 16000 and starts[-1] > len(source) - 24000 - 16000
    assert not np.allclose(windows[0], windows[1]) and not np.allclose(windows[1], windows[2])


def test_reproducible_with_seed_and_epoch(data):
    def first_items(seed, epoch=0):
        dataset = WakeWordDataset(data, [HEY], train=True, augment=AugmentSettings(n_simulated_rooms=1), seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i]["audio"].numpy() for i in range(len(dataset))]

    a, b, c, d = first_items(5), first_items(5), first_items(6), first_items(5, epoch=1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not all(np.allclose(x, y) for x, y in zip(a, c, strict=True))
    assert not all(np.allclose(x, y) for x, y in zip(a, d, strict=True))


def test_default_collate_batches(data):
    dataset = WakeWordDataset(data, [HEY, JARVIS], window_seconds=1.0, train=True)
    batch = next(iter(DataLoader(dataset, batch_size=4, shuffle=False)))
    assert batch["audio"].shape == (4, SAMPLE_RATE) and batch["labels"].shape == (4, 2)
    assert batch["mask"].shape == (4, 2) and len(batch["clip_id"]) == 4


def test_clip_root_pairs_and_bad_arguments(data):
    pairs = [(clip, data.root) for clip in data.clips()[:2]]
    assert len(WakeWordDataset(pairs, [HEY], train=False)) == 2
    with pytest.raises(ValueError, match="distinct"):
        WakeWordDataset(data, [HEY, "Hey Computer"])
    with pytest.raises(ValueError, match="end_gap_seconds"):
        WakeWordDataset(data, [HEY], window_seconds=1.0, end_gap_seconds=(0.5, 1.2))


def test_place_end_puts_sample_exactly():
    audio = np.arange(1, 101, dtype=np.float32)
    window = place_end(audio, end=60, window_samples=50, gap_samples=5)
    assert window[44] == 60 and window[0] == 16 and np.all(window[45:] == np.arange(61, 66))


def _clips(n_groups, per_group):
    return [
        Clip(f"{g}-{k}", f"audio/{g}-{k}.wav", {HEY: k % 2}, "recorded", speaker=f"s{g}")
        for g in range(n_groups)
        for k in range(per_group)
    ]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_split_by_group_is_disjoint(fraction):
    clips = _clips(10, 3)
    train, val = split_by_group(clips, fraction, seed=1)
    assert {c.speaker for c in train}.isdisjoint({c.speaker for c in val})
    assert sorted(c.id for c in train + val) == sorted(c.id for c in clips)
    assert fraction * len(clips) <= len(val) < fraction * len(clips) + 3
    assert split_by_group(clips, fraction, seed=1) == (train, val)
    assert split_by_group(clips, fraction, seed=2) != (train, val)


def test_split_keeps_sessions_and_augmented_copies_with_parents():
    clips = _clips(4, 2)
    clips = [c.replace(meta={"session_group": "kitchen"}) if c.speaker in ("s0", "s1") else c for c in clips]
    unnamed = Clip("p", "audio/p.wav", {HEY: 1}, "recorded")
    copy = Clip("q", "audio/q.wav", {HEY: 1}, "augmented", meta={"parent": "p"})
    for seed in range(6):
        train, val = split_by_group([*clips, unnamed, copy], 0.3, seed=seed)
        assert train and val
        sides = [{c.id for c in side} for side in (train, val)]
        assert any({"0-0", "1-1"} <= side for side in sides)  # one session, two speakers: same side
        assert any({"p", "q"} <= side for side in sides)


def test_real_positives_give_same_channel_negatives(tmp_path):
    from wakeword.data.dataset import SAME_CHANNEL_KINDS

    ds = DataSet.create(tmp_path / "real")
    word = burst(0.6, 0.8, 0.7, 7)  # speech from 0.6 to 1.4 s, room tone around it
    word[word == 0] = 0.002 * np.random.default_rng(8).standard_normal(int((word == 0).sum()))
    real = ds.add_audio(word, {HEY: 1}, source="recorded", speaker="ann")
    ds.add_audio(burst(0.2, 0.6, 0.5, 9), {HEY: 1}, source="synth", speaker="tts")  # TTS: nothing derived
    plain = WakeWordDataset(ds, [HEY], train=False)
    dataset = WakeWordDataset(ds, [HEY], train=False, same_channel=SAME_CHANNEL_KINDS)
    assert len(plain) == 2 and len(dataset) == 2 + 4
    derived = [i for i in range(len(dataset)) if dataset._index[i][3]]
    assert [dataset._index[i][3] for i in derived] == list(SAME_CHANNEL_KINDS)
    items = [dataset[i] for i in derived]
    assert all(item["clip_id"] == real.id and item["labels"].tolist() == [0.0] for item in items)
    assert all(item["mask"].tolist() == [1.0] for item in items)
    windows = {kind: dataset.window(i)[0] for kind, i in zip(SAME_CHANNEL_KINDS, derived, strict=True)}
    assert np.abs(windows["background"]).max() < 0.01  # only the quiet room, none of the word
    full = dataset.window(0)[0]
    speech = lambda w: int((np.abs(w) > 0.01).sum())  # noqa: E731
    for kind in ("cut-start", "cut-end"):  # half the word, give or take the cut's 35-65% range
        assert 0.3 * speech(full) < speech(windows[kind]) < 0.7 * speech(full)
    assert speech(windows["reversed"]) == pytest.approx(speech(full), rel=0.05)
    assert dataset.counts() == {HEY: {"positive": 2, "negative": 4}}
    with pytest.raises(ValueError, match="unknown same-channel"):
        WakeWordDataset(ds, [HEY], same_channel=("echo",))
