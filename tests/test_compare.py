"""`wakeword compare` end to end on TTS: held-out session groups, nested subsets, table, plot, resume."""

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from wakeword.cli import main
from wakeword.compare import held_out_split, import_keyword_corpus, load_compare

RECIPES = Path(__file__).parents[1] / "recipes"
VOICES = [("en-US", ""), ("en-GB-x-rp", "f2"), ("en-029", "m3"), ("en-US", "f4"), ("en-GB-scotland", "m1"),
          ("en-US", "m7")]  # fmt: skip


def _keyword_corpus(tmp_path: Path, tts) -> Path:
    """A manifest CSV like ../shared/data/keywords: three "jarvis" takes per voice, one session group each."""
    rows = []
    for group, (accent, variant) in enumerate(VOICES):
        for take, speed in enumerate((0.9, 1.0, 1.15)):
            path = Path("jarvis") / f"g{group}-{take}.wav"
            (tmp_path / "keywords" / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "keywords" / path, tts("jarvis", accent=accent, variant=variant, speed=speed), 16000)
            rows.append({"path": str(path), "keyword": "jarvis", "session_group": f"g{group}"})
    manifest = tmp_path / "keywords" / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "keyword", "session_group"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_held_out_split_keeps_session_groups_apart_and_subsets_nested(tmp_path, tts):
    manifest = _keyword_corpus(tmp_path, tts)
    real = import_keyword_corpus(manifest, "jarvis", tmp_path / "real")
    spec = load_compare(RECIPES / "compare.yaml", (f"compare.real={manifest}", "compare.max_test_positives=null"))
    pool, test = held_out_split(spec, real)
    groups = lambda clips: {c.meta["session_group"] for c in clips}  # noqa: E731
    assert not groups(pool) & groups(test) and len(groups(test)) == 3  # half of the six groups are held out
    assert sorted(c.id for c in pool + test) == sorted(c.id for c in real.clips())
    assert held_out_split(spec, real) == (pool, test)  # seeded: the same subsets every run
    limited = load_compare(RECIPES / "compare.yaml", (f"compare.real={manifest}", "compare.max_test_positives=4"))
    pool_4, test_4 = held_out_split(limited, real)
    assert pool_4 == pool and len(test_4) == 4 and {c.id for c in test_4} <= {c.id for c in test}


def test_compare_trains_each_size_writes_table_and_plot_and_resumes(tmp_path, tts, capsys):
    manifest = _keyword_corpus(tmp_path, tts)
    negatives = tmp_path / "speech"
    negatives.mkdir()
    for i, text in enumerate(["the weather is nice today", "please read the next sentence", "good morning"]):
        sf.write(negatives / f"{i}.wav", tts(text, accent="en-GB-x-rp"), 16000)
    tiny = ["data.synth.n_positives=4", "data.synth.n_confusables=2", "data.synth.n_generic=2", "data.synth.qc=false",
            "train.epochs=1", "train.batch_size=8", f"data.synth.out={tmp_path / 'synth'}",
            "evaluate.calibration_minutes=0"]  # fmt: skip
    (tmp_path / "compare.yaml").write_text(
        json.dumps(
            {
                "compare": {
                    "name": "tiny",
                    "wake_word": "jarvis",
                    "real": str(manifest),
                    "negatives": [str(negatives)],
                    "noise": None,
                    "snr_db": None,
                    "sizes": [0, 3],
                    "out": str(tmp_path / "out"),
                    "contenders": [
                        {"label": "e2e", "recipe": str(RECIPES / "e2e.yaml"), "set": tiny},
                        {"label": "phoneme", "recipe": str(RECIPES / "phoneme.yaml"), "set": tiny, "sizes": [0]},
                    ],
                }
            }
        )
    )
    assert main(["compare", str(tmp_path / "compare.yaml")]) == 0
    table = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert [(r["label"], r["n_real"]) for r in table["rows"]] == [("e2e", 0), ("e2e", 3), ("phoneme", 0)]
    for row in table["rows"]:
        assert 0.0 <= row["frr"] <= 1.0 and 0.0 <= row["roc_auc"] <= 1.0 and row["n_test_positives"] == 9
        assert np.isclose(row["negative_hours"], sum(sf.info(p).duration for p in negatives.iterdir()) / 3600)
    lines = (tmp_path / "out" / "real" / "n3" / "clips.jsonl").read_text().splitlines()
    real_n3 = [json.loads(line) for line in lines]
    assert len(real_n3) == 3 and all(c["source"] == "corpus" for c in real_n3)
    assert (tmp_path / "out" / "learning_curve.png").stat().st_size > 10_000
    model = tmp_path / "out" / "models" / "e2e" / "n3" / "model.safetensors"
    trained_at = model.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "compare.yaml")]) == 0  # a rerun skips finished rows
    assert model.stat().st_mtime_ns == trained_at and "n_real=" not in capsys.readouterr().out
