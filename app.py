"""The wakeword studio: record your wake word in the browser, train a detector, try it live.

    python app.py [--host 127.0.0.1] [--port 7860] [--data-root wakeword-data]

Thin by design: this file lays out components and calls wakeword.studio, where the work is done.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from functools import partial
from pathlib import Path

import gradio as gr
from PIL import Image

from wakeword.live import LiveSession
from wakeword.studio import (
    CORRECTIONS,
    EXPORTS,
    FAMILIES,
    FREEZE_STRATEGIES,
    LABELS,
    ROOM,
    Studio,
    StudioError,
)

GUIDANCE = """**What helps most.** Record **about 10 clips of the wake word**, a few clips that are *not* it, and
**3-10 minutes of your room** (*room recording*: the TV, people talking, the fan, you talking to someone else;
never the wake word).
- Vary the wake word: near and far from the microphone, loud and soft, fast and slow, other people saying it.
- Your clips all train the model (with fewer than 6 speakers none is held out); each also gives the model
  negatives from the same microphone (the sound around the word, the word cut short, the word reversed), so it
  learns the word, not your microphone.
- *Not wake word*: similar-sounding phrases ("hey commuter", "computer" alone, "hey") and ordinary talk.
- The room recording is mined for near misses while training, and a quarter of it sets the threshold.
- Clips must be 0.3-5 s long (say the phrase once per clip); a room recording up to 10 MB (about 1.5 min from the
  browser; record several, they all count).
"""
CSS = """
#wakeword-indicator { font-size: 1.6em; font-weight: 700; padding: 0.8em; border-radius: 0.5em; text-align: center; }
.wakeword-listening { background: #eef2f7; color: #334; }
.wakeword-fired { background: #d62828; color: white; }
"""
MAX_UPLOAD = "10mb"  # Gradio refuses larger uploads before they reach the studio (which checks again)


def _guard(function):
    """Show a StudioError to the user as a Gradio error message instead of a traceback."""

    @functools.wraps(function)  # keeps the signature: Gradio finds a gr.Progress parameter through it
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StudioError as error:
            raise gr.Error(str(error)) from None

    return wrapped


def _choices(clips: list) -> gr.Dropdown:
    return gr.Dropdown(choices=[(f"{r[0]}  {r[1]}  {r[3]} s", r[0]) for r in clips], value=None)


def _png(path: Path | None) -> Image.Image | None:
    """A plot as pixels: the browser never gets a server path."""
    return Image.open(path).convert("RGB") if path else None


def record_tab(studio: Studio) -> tuple:
    gr.Markdown(GUIDANCE)
    with gr.Row():
        dataset = gr.Textbox("my-recordings", label="Data set", elem_id="record-dataset")
        word = gr.Textbox("hey computer", label="Wake word", elem_id="record-word")
        speaker = gr.Textbox("", label="Speaker (optional)", elem_id="record-speaker")
    label = gr.Radio([*LABELS, ROOM], value="wake word", label="This clip is", elem_id="record-label")
    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Recording", elem_id="record-audio")
    save = gr.Button("Save clip", variant="primary", elem_id="record-save")
    status = gr.Markdown(elem_id="record-status")
    summary = gr.Markdown(elem_id="record-summary")
    table = gr.Dataframe(headers=["clip", "label", "wake word", "seconds", "speaker"], interactive=False,
                         label="Clips (newest first)", elem_id="record-clips")  # fmt: skip
    with gr.Row():
        pick = gr.Dropdown([], label="Clip", elem_id="record-pick")
        play = gr.Audio(label="Play back", interactive=False, elem_id="record-play")
        delete = gr.Button("Delete clip", variant="stop", elem_id="record-delete")

    def refresh(name):
        try:
            clips = studio.clips_table(name)
            return clips, studio.dataset_summary(name), _choices(clips)
        except StudioError as error:
            return [], f"**{error}**", _choices([])

    @_guard
    def on_save(name, wake_word, kind, recording, who):
        clip_id = studio.save_clip(name, wake_word, kind, recording, who)
        return (None, f"Saved clip `{clip_id}` as *{kind}*.", *refresh(name))

    save.click(on_save, [dataset, word, label, audio, speaker], [audio, status, table, summary, pick])
    dataset.change(refresh, [dataset], [table, summary, pick])
    pick.change(_guard(lambda name, clip: studio.clip_audio(name, clip) if clip else None), [dataset, pick], [play])

    @_guard
    def on_delete(name, clip):
        if not clip:
            raise StudioError("pick a clip to delete")
        studio.delete_clip(name, clip)
        return (f"Deleted clip `{clip}`.", None, *refresh(name))

    delete.click(on_delete, [dataset, pick], [status, play, table, summary, pick])
    return dataset, refresh, (table, summary, pick)


TRAIN_HELP = """Training uses your recorded clips **plus** the recipe's synthetic voices and negatives (made once,
then reused). *transfer* adapts a pretrained speech recogniser (freeze `head` for a few dozen clips, `top-k` for
hundreds, `full` for thousands); *e2e* learns from scratch; *phoneme* needs no training at all (calibration only).
"""


def train_tab(studio: Studio) -> gr.Dropdown:
    recipes, datasets = list(studio.recipes()), studio.datasets()
    first = "quickstart" if "quickstart" in recipes else (recipes[0] if recipes else None)
    family_0, freeze_0 = studio.recipe_model(first) if first else ("transfer", "head")
    gr.Markdown(TRAIN_HELP)
    with gr.Row():
        dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Recorded data set",
                              elem_id="train-dataset")  # fmt: skip
        word = gr.Textbox("hey computer", label="Wake word", elem_id="train-word")
        recipe = gr.Dropdown(recipes, value=first, label="Recipe", elem_id="train-recipe")
    with gr.Row():
        family = gr.Radio(list(FAMILIES), value=family_0, label="Family", elem_id="train-family")
        trainable = gr.Radio(list(FREEZE_STRATEGIES), value=freeze_0, label="Freeze strategy (transfer)",
                             elem_id="train-freeze")  # fmt: skip
        name = gr.Textbox("my-detector", label="Model name", elem_id="train-name")
    extra = gr.Textbox("", lines=2, label="Other settings, one key=value per line (e.g. train.epochs=10)",
                       elem_id="train-extra")  # fmt: skip
    overwrite = gr.Checkbox(False, label="Overwrite a model of the same name", elem_id="train-overwrite")
    start = gr.Button("Train", variant="primary", elem_id="train-start")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        metrics = gr.Markdown(elem_id="train-metrics")
        det = gr.Image(label="DET curve (held-out clips)", type="pil", interactive=False, elem_id="train-det")

    @_guard
    def on_train(
        data, wake_word, recipe_name, fam, freeze, model_name, settings, replace,
        progress=gr.Progress(),  # noqa: B008 (Gradio finds its progress bar through this default)
    ):  # fmt: skip
        lines = [line.strip() for line in (settings or "").splitlines() if line.strip()]
        built = studio.build_recipe(recipe_name, wake_word, data or None, fam, freeze, lines)
        info = studio.train(model_name, built, lambda f, message: progress(f, desc=message), overwrite=replace)
        saved = f"Saved model **{info.name}** in `{studio.model_dir(info.name)}`."
        return saved, info.metrics_markdown, _png(info.det_png)

    inputs = [dataset, word, recipe, family, trainable, name, extra, overwrite]
    trained = start.click(on_train, inputs, [status, metrics, det], concurrency_limit=1)
    recipe.change(
        _guard(lambda r: studio.recipe_model(r) if r else (gr.skip(), gr.skip())), [recipe], [family, trainable]
    )
    front = cascade_panel(studio, dataset, overwrite, (status, metrics, det))
    trained.then(partial(_refresh, studio.cascade_candidates), [front], [front])  # the new model is a candidate
    return dataset, front


CASCADE_HELP = """**Listening all day?** A trained Whisper detector costs about a tenth of a core while it listens. A
*cascade* puts a 35k-parameter network in front of it that scores every hop and wakes the detector only where
it might fire: the same detections for a few thousandths of a core. Only the small network and its gate train
(a few minutes), on the data set above plus the recipe's synthetic voices.
"""


def cascade_panel(studio: Studio, dataset: gr.Dropdown, overwrite: gr.Checkbox, outputs: tuple) -> gr.Dropdown:
    """Build a cascade in front of a trained model; returns the model dropdown (refreshed with the tab)."""
    gr.Markdown(CASCADE_HELP)
    models = studio.cascade_candidates()
    with gr.Row():
        front_of = gr.Dropdown(models, value=next(iter(models), None), label="Detector to put a cascade in front of",
                               elem_id="cascade-model")  # fmt: skip
        name = gr.Textbox("my-detector-cascade", label="Cascade name", elem_id="cascade-name")
    start = gr.Button("Build a cascade", elem_id="cascade-start")

    @_guard
    def on_cascade(data, model, cascade_name, replace, progress=gr.Progress()):  # noqa: B008 (see on_train)
        if not model:
            raise StudioError("train a detector first, then pick it here")
        built = studio.build_cascade_recipe(model, data or None)
        info = studio.train(cascade_name, built, lambda f, message: progress(f, desc=message), overwrite=replace)
        saved = f"Saved cascade **{info.name}** in `{studio.model_dir(info.name)}`: listen with it in *Detect live*."
        return saved, info.metrics_markdown, _png(info.det_png)

    start.click(on_cascade, [dataset, front_of, name, overwrite], list(outputs), concurrency_limit=1)
    return front_of


def _stop(live: LiveSession | None) -> None:
    if live is not None:
        live.close()


CORRECT_HELP = """**Listen and correct.** Every activation is listed below with its audio. Say whether it was right
(you said the wake word) or wrong (a false accept); each verdict is saved as a clip in the corrections data set.
*Retrain* trains the model again with them, in place; *Roll back* restores the version it replaced.
"""


def _activation_choices(live: LiveSession | None, current: int | None) -> gr.Dropdown:
    rows = live.activations_table() if live is not None else []
    choices = [(f"#{r[0]}  {r[1]} s  {r[2]}  {r[3]}  {r[4]}", r[0]) for r in rows]
    value = current if current in {r[0] for r in rows} else (rows[0][0] if rows else None)
    return gr.Dropdown(choices=choices, value=value)


def correct_panel(studio: Studio, session: gr.State, model: gr.Dropdown) -> tuple:
    """The Listen and correct controls under the live detector; returns (table, pick) for the stream."""
    gr.Markdown(CORRECT_HELP)
    table = gr.Dataframe(headers=["#", "seconds", "wake word", "score", "verdict"], interactive=False,
                         label="Activations (newest first)", elem_id="correct-table")  # fmt: skip
    with gr.Row():
        pick = gr.Dropdown([], label="Activation", elem_id="correct-pick")
        play = gr.Audio(label="Play", interactive=False, elem_id="correct-play")
    with gr.Row():
        right = gr.Button("Right: I said it", elem_id="correct-right")
        wrong = gr.Button("Wrong: false accept", variant="stop", elem_id="correct-wrong")
        dataset = gr.Textbox(CORRECTIONS, label="Corrections data set", elem_id="correct-dataset")
    with gr.Row():
        retrain = gr.Button("Retrain with corrections", variant="primary", elem_id="correct-retrain")
        rollback = gr.Button("Roll back to the previous version", elem_id="correct-rollback")
    status = gr.Markdown(elem_id="correct-status")

    def on_pick(live, chosen):
        if live is None or chosen is None:
            return None
        return 16000, live.activation(chosen).audio

    @_guard
    def on_verdict(live, chosen, name, verdict):
        if live is None or chosen is None:
            raise StudioError("no activation picked: listen until the detector fires, then pick one")
        clip_id = studio.correct(live, chosen, verdict, name)
        message = f"Activation #{chosen} saved as **{verdict}** (clip `{clip_id}` in data set *{name}*)."
        return message, live.activations_table(), _activation_choices(live, chosen)

    @_guard
    def on_retrain(name, data, progress=gr.Progress()):  # noqa: B008 (Gradio's progress bar)
        if not name:
            raise StudioError("pick a model first")
        return studio.retrain(name, data, lambda f, message: progress(f, desc=message)), None

    pick.change(_guard(on_pick), [session, pick], [play])
    for button, verdict in ((right, "right"), (wrong, "wrong")):
        button.click(partial(on_verdict, verdict=verdict), [session, pick, dataset], [status, table, pick])
    # a retrained or rolled back model starts a new live session (the stream reloads it)
    retrain.click(on_retrain, [model, dataset], [status, session], concurrency_limit=1)
    rollback.click(_guard(lambda name: (studio.rollback(name), None)), [model], [status, session])
    return table, pick


def detect_tab(studio: Studio) -> gr.Dropdown:
    models = studio.models()
    with gr.Row():
        model = gr.Dropdown(models, value=models[0] if models else None, label="Model", elem_id="detect-model")
        level = studio.threshold(models[0]) if models else 0.0
        # logits: a probability slider would crowd every confident threshold into its last pixel
        threshold = gr.Slider(-10.0, 30.0, value=level, step=0.05, label="Threshold (logit; 0 = probability 0.5)",
                              elem_id="detect-threshold")  # fmt: skip
    mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath", label="Microphone", elem_id="detect-mic")
    indicator = gr.HTML('<div id="wakeword-indicator" class="wakeword-listening" data-state="idle" '
                        'data-count="0">Start the microphone to listen</div>')  # fmt: skip
    plot = gr.LinePlot(x="time_seconds", y="score", color="series", label="Live score (last 10 s)", height=260,
                       x_title="seconds", y_title="score (logit)")  # fmt: skip
    events = gr.Textbox(label="Detections", lines=4, interactive=False, elem_id="detect-events")
    session = gr.State(None)
    with gr.Accordion("Listen and correct", open=True, elem_id="correct"):
        table, pick = correct_panel(studio, session, model)

    @_guard
    def on_chunk(chunk, live, name, level, chosen):
        if chunk is None or not name:
            return live, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        detector = studio.detector(name)  # reloaded when the model was retrained or rolled back
        if live is None or live.model_name != name or live.detector is not detector:
            _stop(live)
            live = LiveSession(detector, name, level, studio.limits)
        live.push_file(chunk, level)  # scored in the session's background thread, in order
        plot = live.plot_frame() if live.plot_due() else gr.skip()
        rows = (gr.skip(), gr.skip())
        if live.n_listed != len(live.activations):  # the activation list changes rarely: send it only then
            live.n_listed = len(live.activations)
            rows = (live.activations_table(), _activation_choices(live, chosen))
        return live, plot, live.indicator_html(), live.events_text(), *rows

    def on_model(name):
        return gr.Slider(value=studio.threshold(name)) if name else gr.skip()

    mic.stream(on_chunk, [mic, session, model, threshold, pick], [session, plot, indicator, events, table, pick],
               stream_every=0.1, time_limit=600, concurrency_limit=4, show_progress="hidden")  # fmt: skip

    def on_stop(live, chosen):
        if live is None:
            return gr.skip(), gr.skip()
        live.finish()  # the last activation's audio is kept even if the stream ended right after it
        live.n_listed = len(live.activations)
        return live.activations_table(), _activation_choices(live, chosen)

    mic.start_recording(_stop, [session], [session])  # a new recording is a new stream: time starts at 0
    mic.stop_recording(on_stop, [session, pick], [table, pick])
    model.change(_guard(on_model), [model], [threshold])
    return model


def models_tab(studio: Studio) -> tuple:
    models = studio.models()
    model = gr.Dropdown(models, value=models[0] if models else None, label="Saved model", elem_id="models-pick")
    with gr.Row():
        with gr.Column():
            metrics = gr.Markdown(elem_id="models-metrics")
            det = gr.Image(label="DET curve", type="pil", interactive=False)
        config = gr.JSON(label="config.json", elem_id="models-config")
    with gr.Row(equal_height=True):
        int8 = gr.Checkbox(
            label="int8 (faster; float32 re-scores near the threshold, so it decides the same)", elem_id="models-int8"
        )
        export = gr.Button("Export for wakeword-runtime (ONNX)", elem_id="models-export")
        download = gr.File(label="Exported model (zip: ONNX graph(s) + runtime.json)", elem_id="models-download")

    @_guard
    def show(name):
        if not name:
            return "No model yet: train one in the Train tab.", None, None
        info = studio.model_info(name)
        return info.metrics_markdown, _png(info.det_png), info.config

    @_guard
    def on_export(name, quantize):
        if not name:
            raise StudioError("no model to export: train one in the Train tab")
        return str(studio.export(name, int8=quantize))

    model.change(show, [model], [metrics, det, config])
    model.change(lambda _: None, [model], [download])  # a zip belongs to the model it was made from
    export.click(on_export, [model, int8], [download], concurrency_limit=1)
    return model, show, (metrics, det, config)


def _refresh(names: Callable[[], list[str]], current: str | None) -> gr.Dropdown:
    """Fresh choices for a dropdown, keeping the current pick (or taking the first)."""
    choices = names()
    return gr.Dropdown(choices=choices, value=current if current in choices else next(iter(choices), None))


def build_app(studio: Studio) -> gr.Blocks:
    """The four tabs on one Studio. Lists of data sets and models refresh whenever a tab is opened."""
    with gr.Blocks(title="wakeword studio", analytics_enabled=False) as app:
        gr.Markdown("# wakeword studio\nRecord your wake word, train a detector, try it live.")
        with gr.Tabs():
            with gr.Tab("Record", id="record") as record:
                rec_dataset, rec_refresh, rec_outputs = record_tab(studio)
            with gr.Tab("Train", id="train") as train:
                train_dataset, cascade_model = train_tab(studio)
            with gr.Tab("Detect live", id="detect") as detect:
                detect_model = detect_tab(studio)
            with gr.Tab("Models", id="models") as models:
                models_model, models_show, models_outputs = models_tab(studio)
        record.select(rec_refresh, [rec_dataset], list(rec_outputs))
        train.select(partial(_refresh, studio.datasets), [train_dataset], [train_dataset])
        train.select(partial(_refresh, studio.cascade_candidates), [cascade_model], [cascade_model])
        detect.select(partial(_refresh, studio.models), [detect_model], [detect_model])
        models.select(partial(_refresh, studio.models), [models_model], [models_model])
        app.load(rec_refresh, [rec_dataset], list(rec_outputs))
        app.load(models_show, [models_model], list(models_outputs))
    return app


def launch(studio: Studio, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> gr.Blocks:
    """Serve the app (127.0.0.1 unless another host is asked for); returns the running Blocks."""
    app = build_app(studio)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts: offline
    app.queue(default_concurrency_limit=2).launch(
        server_name=host, server_port=port, max_file_size=MAX_UPLOAD, prevent_thread_lock=not block,
        theme=theme, css=CSS, footer_links=[], quiet=not block, allowed_paths=[str(studio.root / EXPORTS)],
    )  # fmt: skip
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this computer only)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    parser.add_argument("--data-root", default="wakeword-data", help="folder for recordings, models, synthetic data")
    parser.add_argument("--recipes", default=None, help="folder of recipes (default: the repository's recipes/)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: anyone who can reach it can record, train and delete (no login)")
    launch(Studio(Path(args.data_root), args.recipes), args.host, args.port)


if __name__ == "__main__":
    main()
