"""Attention maps: recorded while painting without changing a pixel, one map per word, and on
studio-tiny a placed subject's map peaking where it was placed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine import attention_maps
from app.engine.families import family_named
from app.engine.regions import RegionPrompt
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from app.services.attention import landings
from tests.engine.conftest import STUDIO_TINY, STUDIO_TINY_READY
from tests.tiny_pipeline import TINY


def _processors(registry: ModelRegistry, model: str) -> dict[str, type]:
    unet = registry.pipeline(model, "cpu").unet
    return {name: type(processor) for name, processor in unet.attn_processors.items()}


def test_recording_leaves_the_painted_pixels_and_the_processors_as_they_were(tiny_registry: ModelRegistry) -> None:
    spec = GenerationSpec(model=TINY, prompt="a red qzxv boat", seed=3, steps=2, n_images=2, scheduler="ddim")
    before = _processors(tiny_registry, TINY)

    plain = run(tiny_registry, GenerationSpec(**{**spec.__dict__, "record_attention": False}), device="cpu")
    recorded = run(tiny_registry, spec, device="cpu")

    for alone, watched in zip(plain.images, recorded.images, strict=True):
        assert np.array_equal(np.asarray(alone), np.asarray(watched))
    assert _processors(tiny_registry, TINY) == before
    assert plain.attention == [None, None]
    assert len(recorded.attention) == 2
    for maps in recorded.attention:
        assert maps is not None
        assert maps.words == ["a", "red", "qzxv", "boat"]
        assert maps.maps.shape[0] == 4 and maps.maps.ndim == 3
        assert np.all(maps.maps >= 0) and np.all(np.isfinite(maps.maps))


def test_recording_wraps_a_regional_processor_and_keeps_its_painting(tiny_registry: ModelRegistry) -> None:
    boxes = [RegionPrompt("a yellow sun", (0.5, 0.0, 1.0, 0.5))]
    spec = GenerationSpec(model=TINY, prompt="a harbour", seed=1, steps=2, scheduler="ddim", regions=boxes)

    plain = run(tiny_registry, GenerationSpec(**{**spec.__dict__, "record_attention": False}), device="cpu")
    recorded = run(tiny_registry, spec, device="cpu")

    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(recorded.images[0]))
    maps = recorded.attention[0]
    assert maps is not None and maps.words == ["a", "harbour"]


class _Tokens:
    """A fast tokenizer's answer for 'a (red:1.3) qzxv': [CLS] a red q ##z ##x ##v [SEP]."""

    is_fast = True
    model_max_length = 16

    def __call__(self, text: str, **_: object) -> dict[str, list]:
        assert text == "a red qzxv"
        return {
            "offset_mapping": [(0, 0), (0, 1), (2, 5), (6, 7), (7, 8), (8, 9), (9, 10), (0, 0)],
            "special_tokens_mask": [1, 0, 0, 0, 0, 0, 0, 1],
        }


def test_a_word_s_map_is_the_sum_of_its_tokens_and_special_tokens_are_skipped() -> None:
    token_maps = np.stack([np.full((2, 2), float(position)) for position in range(10)])

    maps = attention_maps.word_maps(_Tokens(), "a (red:1.3) qzxv", token_maps)

    assert maps.text == "a red qzxv"
    assert maps.words == ["a", "red", "qzxv"]
    assert maps.spans == [(0, 1), (2, 5), (6, 10)]
    assert [float(word[0, 0]) for word in maps.maps] == [1.0, 2.0, 3.0 + 4.0 + 5.0 + 6.0]


def test_the_plain_text_drops_weights_and_keeps_the_first_part_of_a_blend() -> None:
    assert attention_maps.plain_text("a (red:1.3) [boat] on the sea++") == "a red boat on the sea++"
    assert attention_maps.plain_text("a castle AND a storm") == "a castle"


def test_every_family_the_studio_runs_records_maps_and_another_says_why_not() -> None:
    from dataclasses import replace

    for recorded in ("sd1", "sdxl", "sd3", "flux", "flux2", "qwenimage", "zimage"):
        assert attention_maps.unavailable_reason(family_named(recorded)) is None
    later = replace(family_named("zimage"), name="later", label="Later-DiT")
    reason = attention_maps.unavailable_reason(later)
    assert reason is not None and "Later-DiT" in reason


def _boat(registry: ModelRegistry, prompt: str, seed: int) -> tuple[list[str], np.ndarray]:
    spec = GenerationSpec(model=STUDIO_TINY, prompt=prompt, seed=seed, steps=20, guidance=7.0)
    maps = run(registry, spec, device="cpu").attention[0]
    assert maps is not None
    return maps.words, maps.maps


@pytest.mark.slow
@pytest.mark.skipif(not STUDIO_TINY_READY, reason="models/studio-tiny is not trained yet")
def test_on_studio_tiny_a_boat_on_the_left_peaks_left_and_a_nonsense_word_lands_weakly(
    studio_tiny_registry: ModelRegistry,
) -> None:
    torch.manual_seed(0)
    left = right = 0
    nonsense_weaker = 0
    seeds = range(6)
    for seed in seeds:
        words, maps = _boat(studio_tiny_registry, "a red boat on the left", seed)
        found, _heat = landings(words, maps)
        boat = found[words.index("boat")]
        left += boat.peak[0] < 0.5
        right += boat.peak[0] > 0.5

        words, maps = _boat(studio_tiny_registry, "a red qzxv boat on the left", seed)
        found, _heat = landings(words, maps)
        nonsense, boat = found[words.index("qzxv")], found[words.index("boat")]
        nonsense_weaker += nonsense.coverage < boat.coverage and nonsense.strength < boat.strength
        assert nonsense.weak, found
    assert left > right, (left, right)
    assert nonsense_weaker == len(seeds)


def test_a_batch_of_jobs_records_each_image_against_its_own_prompt(tiny_registry: ModelRegistry) -> None:
    from app.engine.batching import run_batch

    specs = [
        GenerationSpec(model=TINY, prompt="a red boat", seed=1, steps=2, scheduler="ddim"),
        GenerationSpec(model=TINY, prompt="a yellow sun over hills", seed=2, steps=2, n_images=2, scheduler="ddim"),
    ]
    quiet = [GenerationSpec(**{**spec.__dict__, "record_attention": False}) for spec in specs]

    watched = run_batch(tiny_registry, specs, device="cpu")
    plain = run_batch(tiny_registry, quiet, device="cpu")

    words = [[maps.words if maps else None for maps in result.attention] for result in watched if result]
    assert words == [[["a", "red", "boat"]], [["a", "yellow", "sun", "over", "hills"]] * 2]
    for with_maps, without in zip(watched, plain, strict=True):
        assert with_maps is not None and without is not None
        for one, other in zip(with_maps.images, without.images, strict=True):
            assert np.array_equal(np.asarray(one), np.asarray(other))


JOINT_MODELS = ("fam-sd3", "fam-flux", "fam-qwenimage", "fam-zimage", "fam-flux2", "fam-flux2-klein")


@pytest.fixture(scope="module")
def joint_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """Tiny SD3, FLUX.1, Qwen-Image, Z-Image, FLUX.2 [dev] and [klein] models (joint attention)."""
    from tests.families.builders import BUILDERS

    root = tmp_path_factory.mktemp("joint-models")
    for model in JOINT_MODELS:
        BUILDERS[model](root / model)
    return ModelRegistry(root, cache_size=len(JOINT_MODELS))


def _transformer_processors(registry: ModelRegistry, model: str) -> dict[str, type]:
    transformer = registry.pipeline(model, "cpu").transformer
    return {name: type(processor) for name, processor in attention_maps._processors(transformer).items()}


@pytest.mark.parametrize(
    ("model", "negative", "images"),
    [
        ("fam-sd3", "", 1),
        ("fam-flux", "", 1),
        ("fam-flux", "blurry", 1),
        ("fam-qwenimage", "blurry", 2),  # true CFG: the negative prompt runs as a pass of its own
        ("fam-zimage", "blurry", 2),  # guided batch [prompt..., negative...] in one pass
        ("fam-flux2", "", 2),
        ("fam-flux2-klein", "blurry", 2),  # true CFG, as Qwen-Image's
    ],
)
def test_joint_attention_is_recorded_without_changing_the_painting(
    joint_registry: ModelRegistry, model: str, negative: str, images: int
) -> None:
    spec = GenerationSpec(
        model=model, prompt="a red boat", negative_prompt=negative, seed=4, steps=2, guidance=3.0, n_images=images
    )
    pipeline = joint_registry.pipeline(model, "cpu")
    before = _transformer_processors(joint_registry, model)

    plain = run(joint_registry, GenerationSpec(**{**spec.__dict__, "record_attention": False}), device="cpu")
    recorded = run(joint_registry, spec, device="cpu")

    for alone, watched in zip(plain.images, recorded.images, strict=True):
        assert np.array_equal(np.asarray(alone), np.asarray(watched))
    assert _transformer_processors(joint_registry, model) == before
    assert not pipeline.transformer._forward_pre_hooks
    assert len(recorded.attention) == images
    for maps in recorded.attention:
        assert maps is not None and maps.words == ["a", "red", "boat"]
        assert maps.text == "a red boat"
        assert np.all(np.isfinite(maps.maps)) and float(maps.maps.sum()) > 0


@pytest.mark.parametrize("model", ["fam-qwenimage", "fam-zimage", "fam-flux2", "fam-flux2-klein"])
def test_a_chat_template_family_finds_each_word_at_its_own_tokens(joint_registry: ModelRegistry, model: str) -> None:
    """The positions given to a word are those where the pipeline's own encoding holds the word's tokens."""
    from app.engine.attention_words import TemplatedText, text_reader

    pipeline = joint_registry.pipeline(model, "cpu")
    reader = text_reader(pipeline, pipeline._studio_family.name)
    assert isinstance(reader, TemplatedText)
    text = "a red boat, by the sea"
    words = ["a", "red", "boat", "by", "the", "sea"]
    spans = [(0, 1), (2, 5), (6, 10), (12, 14), (15, 18), (19, 22)]

    positions = reader.positions(text, spans)

    # What the pipeline itself encodes, read at its text encoder's door (Qwen-Image then cuts its
    # system prompt's first tokens).
    encoded: list[list[int]] = []
    hook = pipeline.text_encoder.register_forward_pre_hook(
        lambda _module, _args, kwargs: encoded.append(kwargs["input_ids"][0].tolist()), with_kwargs=True
    )
    try:
        with torch.inference_mode():
            pipeline.encode_prompt(prompt=text, device="cpu")
    finally:
        hook.remove()
    tokenizer = getattr(reader.renderer, "tokenizer", reader.renderer)
    ids = encoded[0][reader.drop :][: len(positions)]
    assert len(positions) == len(ids)
    first_prompt_token = min(position for position, word in enumerate(positions) if word is not None)
    assert first_prompt_token > 0, "the template's tokens come before the prompt's"
    for index, word in enumerate(words):
        tokens = [ids[position] for position, found in enumerate(positions) if found == index]
        assert tokenizer.decode(tokens).strip() == word


@pytest.mark.parametrize("model", ["fam-qwenimage", "fam-zimage"])
def test_a_batch_of_prompts_of_different_lengths_maps_each_image_as_alone(
    joint_registry: ModelRegistry, model: str
) -> None:
    """Qwen-Image masks a batch's text padding; Z-Image pads each item's caption in its own sequence."""
    from app.engine.batching import run_batch

    specs = [
        GenerationSpec(model=model, prompt="a red boat", seed=1, steps=2, guidance=3.0),
        GenerationSpec(model=model, prompt="a yellow sun over the green hills", seed=2, steps=2, guidance=3.0),
    ]

    batched = run_batch(joint_registry, specs, device="cpu")

    for spec, result in zip(specs, batched, strict=True):
        alone = run(joint_registry, spec, device="cpu").attention[0]
        together = result.attention[0] if result is not None else None
        assert alone is not None and together is not None
        assert together.words == alone.words
        assert np.allclose(together.maps, alone.maps, atol=1e-6)


def test_only_the_prompt_s_passes_of_a_transformer_are_recorded() -> None:
    """True CFG (FLUX.1, FLUX.2 [klein], Qwen-Image) runs the negative prompt as a second pass: its text
    embeddings differ from the first's, though a chat template's tokens before the prompt embed alike."""
    recorder = attention_maps._Recorder(width=64, height=64, guided=lambda: False, half=None)
    template = torch.ones(1, 12, 8)
    prompt = torch.cat([template, torch.zeros(1, 6, 8)], dim=1)
    negative = torch.cat([template, torch.full((1, 6, 8), 2.0)], dim=1)
    shorter = torch.cat([template, torch.zeros(1, 3, 8)], dim=1)

    passes = []
    for context in (prompt, negative, prompt, negative, shorter):
        recorder.forward_starts(None, (), {"encoder_hidden_states": context})
        passes.append(recorder.positive_pass)

    assert passes == [True, False, True, False, False]


def test_a_unet_s_maps_are_read_at_every_other_step_each_step_whole() -> None:
    """A step is told by its timestep: one calling the UNet twice is read or left out as a whole."""
    recorder = attention_maps._Recorder(width=64, height=64, guided=lambda: True)
    read = []
    for timestep in (999, 999, 749, 499, 499, 249, 0):
        recorder.unet_starts(None, (torch.zeros(1), torch.tensor(timestep)), {})
        read.append(recorder.active)

    assert read == [True, True, False, True, True, False, True]


def test_a_four_step_painting_reads_the_cross_attention_at_two_steps(
    tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    observed: list[int] = []
    observe = attention_maps._Recorder.observe

    def counted(self: attention_maps._Recorder, *args: object) -> None:
        observed.append(self.steps)
        observe(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(attention_maps._Recorder, "observe", counted)
    spec = GenerationSpec(model=TINY, prompt="a red boat", seed=3, steps=4, scheduler="euler")
    recorded = run(tiny_registry, spec, device="cpu")

    layers = sum(name.endswith("attn2.processor") for name in _processors(tiny_registry, TINY))
    assert sorted(set(observed)) == [1, 3]  # the first and the third step (counted from 1)
    assert len(observed) == 2 * layers
    assert recorded.attention[0] is not None


def test_a_denoiser_compiled_by_the_fast_path_is_not_wrapped(tiny_registry: ModelRegistry) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    before = dict(pipeline.unet.attn_processors)
    pipeline._studio_compiled = "max-autotune-no-cudagraphs"
    try:
        with attention_maps.recording(pipeline, width=64, height=64) as recorded:
            assert dict(pipeline.unet.attn_processors) == before
    finally:
        del pipeline._studio_compiled
    assert recorded.token_maps is None


@pytest.fixture(scope="module")
def ip_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """Tiny SDXL and FLUX.1 folders with a random IP-Adapter and CLIP image encoder each."""
    from tests.families.test_ip_adapters import FLUX_IP, SDXL_IP, build_flux_ip_adapter, build_sdxl_ip_adapter

    root = tmp_path_factory.mktemp("ip-attention")
    build_sdxl_ip_adapter(root / SDXL_IP)
    build_flux_ip_adapter(root / FLUX_IP)
    return ModelRegistry(root, cache_size=2)


@pytest.mark.parametrize("model", ["sdxl-ip", "flux-ip"])
def test_an_ip_adapter_job_records_the_text_part_of_the_adapter_s_attention(
    ip_registry: ModelRegistry, model: str
) -> None:
    from tests.families.test_ip_adapters import reference

    spec = GenerationSpec(
        model=model,
        prompt="a red barn",
        seed=5,
        steps=2,
        guidance=3.5,
        style_references=[reference()],
        style_method="ip-adapter",
        style_strength=1.0,
    )
    pipeline = ip_registry.pipeline(model, "cpu")
    denoiser = pipeline.unet if model == "sdxl-ip" else pipeline.transformer
    before = {name: type(processor) for name, processor in denoiser.attn_processors.items()}

    plain = run(ip_registry, GenerationSpec(**{**spec.__dict__, "record_attention": False}), device="cpu")
    recorded = run(ip_registry, spec, device="cpu")

    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(recorded.images[0]))
    maps = recorded.attention[0]
    assert maps is not None and maps.words == ["a", "red", "barn"]
    assert np.all(np.isfinite(maps.maps)) and float(maps.maps.sum()) > 0
    # The adapter is unloaded after the call and the recorder's wrappers are gone with it.
    assert {name: type(processor) for name, processor in denoiser.attn_processors.items()} == before


@pytest.mark.parametrize(("steps", "stride"), [(None, 2), (1, 2), (8, 2), (10, 2), (11, 3), (20, 4), (50, 10)])
def test_a_unet_is_read_every_other_step_and_a_long_schedule_at_most_five_times(steps: int | None, stride: int) -> None:
    assert attention_maps.unet_stride(steps) == stride
    if steps:
        assert len(range(0, steps, stride)) <= max(attention_maps.UNET_READ_STEPS, (steps + 1) // 2)
