"""The torch-free estimate: hardware detection, the memory model, speed and its calibration cache,
and refusals that say what to change."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.data.stats import DatasetStats, StatsBuilder
from tuneforge.hardware import GPU, Hardware, detect_hardware, parse_nvidia_smi
from tuneforge.models.catalog import CatalogEntry, catalog
from tuneforge.training.estimate import (
    CalibrationCache,
    Corrections,
    Measured,
    MeasuredRun,
    Timings,
    calibration_key,
    decoder_linear_parameters,
    device_for,
    embedding_parameters,
    estimate,
    fit,
    lora_parameters,
    measured_run,
    resolve_precision,
)
from tuneforge.training.estimate.correction import LIMIT
from tuneforge.training.estimate.memory import LOGITS_CHUNK
from tuneforge.training.estimate.throughput import REFERENCE_TOKENS_PER_SECOND
from tuneforge.training.spec import SFTSpec

GB = 10**9


def cpu(available: float = 21.8, bf16: bool = True, cores: int = 2) -> Hardware:
    return Hardware(
        cpu_model="Test CPU",
        cores=cores,
        memory_total_bytes=int(24 * GB),
        memory_available_bytes=int(available * GB),
        cpu_bf16=bf16,
    )


def gpu(
    free: float = 39.0, name: str = "NVIDIA A100-SXM4-40GB", capability: str = "8.0"
) -> Hardware:
    return cpu().model_copy(
        update={
            "gpus": [
                GPU(
                    name=name,
                    memory_total_bytes=int((free + 1) * GB),
                    memory_free_bytes=int(free * GB),
                    compute_capability=capability,
                    bf16=float(capability) >= 8,
                )
            ]
        }
    )


def model(model_id: str) -> CatalogEntry:
    entry = catalog().get(model_id)
    assert entry is not None, model_id
    return entry


def stats(rows: int = 1000, mean_prompt: int = 180, mean_answer: int = 120) -> DatasetStats:
    """Real statistics (the same builder as processing) of synthetic lengths."""
    rng = random.Random(0)
    prompts = [max(5, int(rng.expovariate(1 / mean_prompt))) for _ in range(rows)]
    answers = [max(2, int(rng.expovariate(1 / mean_answer))) for _ in range(rows)]
    builder = StatsBuilder()
    train = rows * 9 // 10
    for split, part in (("train", slice(0, train)), ("test", slice(train, rows))):
        p, a = prompts[part], answers[part]
        builder.add_lengths(split, p, a, [2] * len(p), [f"{split}{i}" for i in range(len(p))])
    return builder.finish()


def spec(**values: object) -> SFTSpec:
    return SFTSpec(**{"base_model": "gemma-3-270m", "dataset_id": "d", **values})  # type: ignore[arg-type]


def peak(entry: CatalogEntry, hardware: Hardware | None = None, **values: object) -> int:
    result = estimate(spec(**values), entry, stats(), 900, hardware or cpu())
    return result.peak_memory_bytes


# -- hardware ------------------------------------------------------------------------------------


def test_detect_hardware_sees_this_machine_and_caches_it() -> None:
    first = detect_hardware()
    assert first.cores >= 1 and first.cpu_model
    assert 0 < first.memory_available_bytes <= first.memory_total_bytes
    assert detect_hardware() is first  # within the cache's minute
    assert detect_hardware(max_age=0) is not first
    assert detect_hardware(max_age=0).fingerprint == first.fingerprint


def test_fingerprint_follows_compute_not_free_memory() -> None:
    assert cpu(available=3).fingerprint == cpu(available=20).fingerprint
    assert cpu().fingerprint != cpu(cores=8).fingerprint
    assert cpu().fingerprint != gpu().fingerprint
    assert len(cpu().fingerprint) == 16


def test_nvidia_smi_output_is_parsed() -> None:
    output = "NVIDIA A100-SXM4-40GB, 40960, 40000, 8.0\nTesla T4, 15360, [N/A], 7.5\n"
    a100, t4 = parse_nvidia_smi(output)
    assert a100.name == "NVIDIA A100-SXM4-40GB" and a100.bf16
    assert a100.memory_total_bytes == 40960 * 2**20 and a100.memory_free_bytes == 40000 * 2**20
    assert not t4.bf16 and t4.memory_free_bytes == t4.memory_total_bytes
    (old,) = parse_nvidia_smi("Tesla K80, 11441, 11000\n", with_capability=False)
    assert not old.bf16 and old.compute_capability is None


def test_precision_and_device() -> None:
    assert resolve_precision("auto", cpu(bf16=True), "lora") == "bf16"
    assert resolve_precision("auto", cpu(bf16=False), "lora") == "fp32"
    assert resolve_precision("auto", gpu(), "full") == "bf16"
    assert resolve_precision("auto", gpu(name="Tesla T4", capability="7.5"), "qlora") == "fp16"
    assert resolve_precision("fp32", gpu(), "lora") == "fp32"
    assert (device_for(cpu()), device_for(gpu())) == ("cpu", "cuda")


# -- the memory model ----------------------------------------------------------------------------


def test_architecture_numbers_add_up_to_the_catalog_parameters() -> None:
    for entry in catalog().models:
        if entry.family != "gemma-3" or entry.modality != "text":
            continue
        counted = decoder_linear_parameters(entry.architecture) + embedding_parameters(
            entry.architecture
        )
        assert counted == pytest.approx(entry.parameters, rel=2e-3), entry.id


def test_lora_parameters_match_peft() -> None:
    """r x (in + out) per adapted layer, checked against PEFT on Gemma 3 built on the meta
    device from each Gemma 3 decoder architecture in the catalog."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    architectures = {e.architecture.model_dump_json(): e for e in catalog().models}
    for entry in architectures.values():
        if entry.family != "gemma-3":
            continue  # Gemma 3n has further linear layers (AltUp, LAuReL) the estimate skips
        a = entry.architecture
        config = Gemma3TextConfig(
            vocab_size=a.vocab_size,
            hidden_size=a.hidden_size,
            intermediate_size=a.intermediate_size,
            num_hidden_layers=a.layers,
            num_attention_heads=a.attention_heads,
            num_key_value_heads=a.kv_heads,
            head_dim=a.head_dim,
        )
        for targets in (["all-linear"], ["q_proj", "v_proj"]):
            with torch.device("meta"):
                base = Gemma3ForCausalLM(config)
            target: str | list[str] = "all-linear" if targets == ["all-linear"] else targets
            adapted = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=target))
            counted = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
            assert lora_parameters(a, 8, targets) == counted, (entry.id, targets)


def test_memory_grows_with_batch_length_and_rank() -> None:
    entry = model("gemma-3-270m")
    no_stats = cpu(available=1000)

    def at(**values: object) -> int:
        return estimate(spec(**values), entry, None, 900, no_stats).peak_memory_bytes

    assert at(batch_size=1) < at(batch_size=2) < at(batch_size=8)
    assert at(max_length=256) < at(max_length=512) < at(max_length=2048)
    assert at(lora_r=8) < at(lora_r=64) < at(lora_r=256)
    assert at(gradient_checkpointing=True) < at(gradient_checkpointing=False)
    assert at(precision="bf16") < at(precision="fp32")


def test_full_needs_more_than_lora_which_needs_more_than_qlora() -> None:
    for model_id in ("gemma-3-270m", "gemma-3-4b"):
        entry = catalog().get(model_id)
        if entry is None:
            continue
        full, lora, qlora = (peak(entry, gpu(), method=m) for m in ("full", "lora", "qlora"))
        assert full > lora > qlora, model_id


def test_bigger_models_need_more() -> None:
    entries = sorted(
        (e for e in catalog().models if e.family == "gemma-3" and not e.test_only),
        key=lambda e: e.parameters,
    )
    peaks = [peak(e, gpu()) for e in entries]
    assert peaks == sorted(peaks)


def test_an_impossible_run_is_refused_with_what_to_change() -> None:
    biggest = max(catalog().models, key=lambda e: e.parameters)
    result = estimate(
        spec(base_model=biggest.id, method="full", batch_size=64, max_length=8192),
        biggest,
        None,
        10_000,
        cpu(available=21.8),
    )
    assert not result.fits
    assert result.peak_memory_bytes > result.available_memory_bytes
    assert result.refusal is not None
    assert result.refusal.startswith("Needs about ")
    assert "this machine has 21.8 GB free" in result.refusal
    assert "LoRA" in result.refusal and "smaller model" in result.refusal


def test_a_refusal_names_the_changes_that_are_enough_in_order_of_effect() -> None:
    entry, data, small = model("gemma-3-270m"), stats(), cpu(available=8)
    result = estimate(spec(batch_size=16, max_length=1024), entry, data, 900, small)
    assert not result.fits and result.refusal
    assert result.refusal.startswith("Needs about ")
    assert "this machine has 8.0 GB free: lower the batch size from 16 to " in result.refusal
    assert result.refusal.endswith(", or turn on gradient checkpointing.")
    size = int(result.refusal.split("lower the batch size from 16 to ")[1].split()[0])
    assert f"(with gradient accumulation {16 // size} to keep 16 examples per step)" in (
        result.refusal
    )
    peaks = []
    for change in ({"batch_size": size}, {"gradient_checkpointing": True}):
        changed = estimate(spec(**{"batch_size": 16, **change}), entry, data, 900, small)
        assert changed.fits, f"{change} is not enough alone"
        peaks.append(changed.peak_memory_bytes)
    assert peaks == sorted(peaks), "the change that saves the most comes first"
    bigger = spec(batch_size=size * 2, max_length=1024)
    assert not estimate(bigger, entry, data, 900, small).fits, "the largest that fits"


def test_when_no_single_change_is_enough_they_are_combined() -> None:
    entry, data, tiny_ram = model("gemma-3-270m"), stats(), cpu(available=3)
    result = estimate(spec(batch_size=16, max_length=1024), entry, data, 900, tiny_ram)
    assert result.refusal
    assert "no single change is enough: turn on gradient checkpointing, and lower the batch " in (
        result.refusal
    )
    size = int(result.refusal.split("lower the batch size from 16 to ")[1].split()[0])
    combined = spec(batch_size=size, gradient_accumulation=16 // size, gradient_checkpointing=True)
    assert estimate(combined, entry, data, 900, tiny_ram).fits


def test_qlora_without_cuda_is_refused() -> None:
    result = estimate(spec(method="qlora"), model("gemma-3-270m"), stats(), 900, cpu())
    assert not result.fits
    assert result.refusal == (
        "QLoRA needs a CUDA GPU with bitsandbytes; this machine has none: choose LoRA."
    )
    assert estimate(spec(method="qlora"), model("gemma-3-270m"), stats(), 900, gpu()).fits


def test_vision_models_say_images_are_not_trained() -> None:
    vision = next((e for e in catalog().models if e.modality == "vision"), None)
    assert vision is not None, "the catalog has vision models (Gemma 3 4B/12B/27B)"
    result = estimate(spec(base_model=vision.id), vision, stats(), 900, gpu(free=79))
    assert any("text only" in message for message in result.messages)


def test_stats_as_model_or_as_json_give_the_same_estimate() -> None:
    entry, data = model("gemma-3-270m"), stats()
    from_model = estimate(spec(), entry, data, 900, cpu())
    from_json = estimate(spec(), entry, json.loads(data.model_dump_json()), 900, cpu())
    assert from_model == from_json


def test_sane_numbers_for_gemma_3_270m_lora_on_this_kind_of_cpu() -> None:
    """A typical dataset: 900 training examples of ~300 tokens, 3 epochs, LoRA r=16, bf16,
    batch 4 x 4, on a 2-core AVX-512-BF16 CPU (this machine: 165 tokens/s measured)."""
    data = stats()
    result = estimate(
        spec(batch_size=4, gradient_accumulation=4), model("gemma-3-270m"), data, 900, cpu()
    )
    assert result.fits and result.refusal is None
    assert (result.device, result.precision) == ("cpu", "bf16")
    assert result.trainable_parameters == 3_796_992  # what PEFT reports for r=16, all-linear
    assert result.total_parameters == 268_098_176
    assert result.steps == 171  # ceil(900 / 16) x 3
    assert result.tokens == pytest.approx(900 * 3 * data.total_tokens.mean, rel=0.02)
    assert 1 * GB < result.peak_memory_bytes < 10 * GB
    assert 80 < result.tokens_per_second < 300
    assert result.training_seconds == pytest.approx(result.tokens / result.tokens_per_second, 0.01)
    assert result.duration_seconds == pytest.approx(result.phases.total, abs=0.5)
    assert result.duration_seconds > result.training_seconds + 10  # starting and saving count
    assert not result.calibrated
    assert result.memory.total_bytes == result.peak_memory_bytes


def test_max_steps_decides_the_length_of_the_run() -> None:
    result = estimate(
        spec(max_steps=10, batch_size=2, gradient_accumulation=4),
        model("gemma-3-270m"),
        stats(),
        900,
        cpu(),
    )
    assert result.steps == 10
    assert result.tokens == pytest.approx(10 * 8 * stats().total_tokens.mean, rel=0.02)


def test_the_cpu_speed_is_scaled_to_the_measurement() -> None:
    """The reference workload gives 165 tokens/s; more cores are faster, fp32 slower."""
    reference = SFTSpec(base_model="gemma-3-270m", dataset_id="d", batch_size=4, max_length=256)
    entry = model("gemma-3-270m")
    lengths = {
        "rows": {"train": 100},
        "total_tokens": {"count": 100, "mean": 256, "p50": 256, "p90": 256, "p95": 256, "max": 256},
        "answer_tokens": {"mean": 64},
    }

    def flops_speed(hardware: Hardware, run: SFTSpec = reference) -> float:
        """The speed of a step's tokens, its fixed cost aside."""
        step = estimate(run, entry, lengths, 100, hardware).step
        return step.tokens / step.varying_seconds

    assert flops_speed(cpu()) == pytest.approx(REFERENCE_TOKENS_PER_SECOND, rel=0.02)
    assert flops_speed(cpu(cores=8)) > 600
    assert flops_speed(cpu(), reference.model_copy(update={"precision": "fp32"})) < 100
    # the whole step, its fixed cost included, is a little slower
    result = estimate(reference, entry, lengths, 100, cpu())
    assert 0.8 * REFERENCE_TOKENS_PER_SECOND < result.tokens_per_second < flops_speed(cpu())


def test_logit_chunk_matches_the_loss_component() -> None:
    loss = pytest.importorskip("tuneforge.training.components.loss")
    assert loss.CHUNK == LOGITS_CHUNK


# -- calibration ---------------------------------------------------------------------------------


def measured(shape: str, fixed: float, varying: float, value: float) -> Measured:
    return Measured(shape=shape, fixed=fixed, varying=varying, measured=value)


def run_of(peak_bytes: float, step_seconds: float, shape: str = "b4") -> MeasuredRun:
    """A measured run whose model said 1 GB + 1 GB and 0.5 s + 1.5 s a step."""
    return MeasuredRun(
        memory=measured(shape, GB, GB, peak_bytes),
        step_seconds=measured(shape, 0.5, 1.5, step_seconds),
    )


def test_calibration_cache_round_trip(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    key = cache.key("abc", "gemma-3-270m", "lora", "bf16", False, True)
    assert cache.runs(key) == [] and cache.corrections(key) == Corrections()
    cache.record(key, run_of(3 * GB, 4.0))
    cache.record(key, None, Timings(load_seconds=5.0))  # an attempt that took no step
    assert cache.runs(key) == [run_of(3 * GB, 4.0)]
    corrections = cache.corrections(key)
    assert corrections.memory is not None and corrections.step_seconds is not None
    assert corrections.memory.apply(GB, GB) == pytest.approx(3 * GB)
    assert corrections.step_seconds.apply(0.5, 1.5) == pytest.approx(4.0)
    for step in range(1, 21):
        cache.record(key, run_of(2 * GB, float(step)))
    assert len(cache.runs(key)) == CalibrationCache.KEEP_RUNS
    assert cache.runs(key)[-1] == run_of(2 * GB, 20.0)
    other = cache.key("abc", "gemma-3-270m", "lora", "bf16", True, True)
    assert other != key and cache.runs(other) == []
    # Each trainer has its own measurements; SFT's keep the key they had before trainers.
    assert cache.key("abc", "gemma-3-270m", "lora", "bf16", False, True, "sft") == key
    dpo = cache.key("abc", "gemma-3-270m", "lora", "bf16", False, True, "dpo")
    assert dpo != key and cache.runs(dpo) == []
    assert CalibrationCache(tmp_path / "calibration.json").runs(key) == cache.runs(key)


def test_a_broken_cache_file_or_an_old_entry_reads_as_no_runs(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    cache = CalibrationCache(path)
    key = cache.key("abc", "m", "lora", "bf16", False, True)
    assert cache.runs(key) == []
    cache.record(key, run_of(GB, 1.0))
    assert len(json.loads(path.read_text())["entries"][key]["runs"]) == 1
    # an entry written before runs were kept beside the model's figures: speeds alone
    old = {"tokens_per_second": [100.0], "peak_memory_bytes": [GB], "timings": {}}
    path.write_text(json.dumps({"version": 1, "entries": {key: old}}))
    assert cache.runs(key) == [] and cache.corrections(key) == Corrections()


WRITER = """
import sys
from tuneforge.training.estimate import CalibrationCache, Measured, MeasuredRun
cache = CalibrationCache(sys.argv[1])
for i in range(int(sys.argv[3])):
    figure = Measured(shape="s", fixed=1.0, varying=1.0, measured=1.0 + i)
    run = MeasuredRun(memory=figure, step_seconds=figure)
    cache.record(cache.key("fp", f"model-{sys.argv[2]}", "lora", "bf16", False, True), run)
    cache.record(cache.key("fp", "shared", "lora", "bf16", False, True), run)
"""


def test_concurrent_writers_lose_nothing_and_never_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "8"]) for w in range(4)
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0] * 4
    entries = json.loads(path.read_text())["entries"]
    cache = CalibrationCache(path)
    for w in range(4):
        runs = cache.runs(cache.key("fp", f"model-{w}", "lora", "bf16", False, True))
        assert len(runs) == 8, "a measurement was lost"
    shared = cache.runs(cache.key("fp", "shared", "lora", "bf16", False, True))
    assert len(shared) == CalibrationCache.KEEP_RUNS
    assert len(entries) == 5
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"


# -- correction ----------------------------------------------------------------------------------


def test_one_shape_measured_scales_both_parts_alike() -> None:
    correction = fit([measured("a", 2.0, 1.0, 4.5)])
    assert correction is not None and correction.runs == 1
    assert correction.fixed == pytest.approx(1.5) and correction.varying == pytest.approx(1.5)
    assert fit([]) is None


def test_two_shapes_tell_the_parts_apart_and_carry_to_a_third() -> None:
    """Runs made by factors 1.3 (fixed) and 0.6 (varying) of the model: two shapes recover
    them, and a shape not measured is predicted from them."""

    def truth(fixed: float, varying: float) -> float:
        return 1.3 * fixed + 0.6 * varying

    shapes = [("small", 2.0, 0.5), ("large", 2.0, 4.0)]
    correction = fit([measured(s, f, v, truth(f, v)) for s, f, v in shapes])
    assert correction is not None
    assert correction.fixed == pytest.approx(1.3, rel=0.05)
    assert correction.varying == pytest.approx(0.6, rel=0.05)
    assert correction.apply(2.0, 8.0) == pytest.approx(truth(2.0, 8.0), rel=0.03)
    single = fit([measured("small", 2.0, 0.5, truth(2.0, 0.5))])
    assert single is not None  # one shape alone would be 1.2x off at the third
    assert single.apply(2.0, 8.0) > 1.15 * truth(2.0, 8.0)


def test_a_slow_run_among_several_of_its_shape_moves_nothing() -> None:
    runs = [measured("a", 1.0, 1.0, 2.0), measured("a", 1.0, 1.0, 2.1), measured("a", 1.0, 1.0, 9)]
    correction = fit(runs)
    assert correction is not None and correction.runs == 3
    assert correction.apply(1.0, 1.0) == pytest.approx(2.1)


def test_noisy_close_shapes_cannot_send_a_factor_far_off() -> None:
    runs = [measured("a", 1.0, 1.0, 2.0), measured("b", 1.0, 1.02, 1.8)]
    correction = fit(runs)
    assert correction is not None
    for factor in (correction.fixed, correction.varying):
        assert 0 < factor <= LIMIT * 1.0 + 1e-9
    assert correction.apply(1.0, 1.01) == pytest.approx(1.9, rel=0.1)


# -- corrected estimates -------------------------------------------------------------------------


def test_measured_runs_correct_the_speed_and_the_peak(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    entry, hardware, run = model("gemma-3-270m"), cpu(), spec()
    guess = estimate(run, entry, stats(), 900, hardware, cache)
    assert not guess.calibrated and guess.measured_runs == 0
    assert guess.peak_memory_bytes == guess.memory.total_bytes
    key = calibration_key(run, entry, hardware, guess.precision)
    step_tokens = guess.step.tokens
    cache.record(key, measured_run(run, guess, int(1.5 * guess.memory.total_bytes), 1000.0))
    corrected = estimate(run, entry, stats(), 900, hardware, cache)
    assert corrected.calibrated and corrected.measured_runs == 1
    assert corrected.tokens_per_second == pytest.approx(1000.0, rel=1e-3)
    assert corrected.training_seconds == pytest.approx(corrected.tokens / 1000.0, rel=1e-3)
    assert corrected.step.tokens == step_tokens  # the model's figures stay the model's
    assert corrected.peak_memory_bytes == pytest.approx(1.5 * guess.memory.total_bytes, rel=1e-3)
    assert corrected.memory == guess.memory
    assert not any("rough guess" in m for m in corrected.messages)
    elsewhere = estimate(run, entry, stats(), 900, cpu(cores=8), cache)
    assert not elsewhere.calibrated, "another machine's measurement must not be used"
    # another batch size and length of the same setup is corrected too
    other = spec(batch_size=1, max_length=512)
    assert estimate(other, entry, stats(), 900, hardware, cache).measured_runs == 1


def test_fit_and_refusal_use_the_corrected_peak(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    entry, run = model("gemma-3-270m"), spec()
    modelled = estimate(run, entry, stats(), 900, cpu(), cache)
    roomy = cpu(available=1.3 * modelled.memory.total_bytes / GB)
    assert estimate(run, entry, stats(), 900, roomy, cache).fits
    key = calibration_key(run, entry, roomy, modelled.precision)
    cache.record(key, measured_run(run, modelled, 2 * modelled.memory.total_bytes, 100.0))
    corrected = estimate(run, entry, stats(), 900, roomy, cache)
    assert not corrected.fits and corrected.refusal is not None
    assert corrected.refusal.startswith(f"Needs about {corrected.peak_memory_bytes / GB:.1f} GB")
    # the advice weighs each change with the measured correction: a smaller batch is enough
    assert "lower the batch size" in corrected.refusal


def test_measured_phase_timings_replace_the_first_run_constants(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    entry, hardware = model("tiny-random-gemma3"), cpu()
    run = spec(base_model=entry.id, max_steps=30, eval_every=10, checkpoint_every=10)
    guess = estimate(run, entry, stats(), 40, hardware, cache, test_rows=10)
    # first run: the constants of this machine; starting a worker alone takes seconds
    assert guess.phases.loading >= 10 and guess.phases.saving >= 1
    assert guess.phases.evaluating > 0 and guess.phases.sampling > 0
    assert guess.phases.checkpoints > 0  # at steps 10 and 20
    assert guess.duration_seconds == pytest.approx(guess.phases.total, abs=0.5)
    key = calibration_key(run, entry, hardware, guess.precision)
    timings = Timings(
        load_seconds=20.0,
        eval_seconds_per_token=0.001,
        sample_seconds_per_token=0.05,
        checkpoint_seconds=2.0,
        save_seconds=4.0,
    )
    cache.record(key, measured_run(run, guess, GB, 500.0), timings)
    cache.record(key, None, timings.model_copy(update={"load_seconds": 30.0}))
    assert cache.timings(key).load_seconds == 25.0  # the mean of the measurements
    measured = estimate(run, entry, stats(), 40, hardware, cache, test_rows=10)
    assert measured.phases.loading == 25.0
    assert measured.phases.checkpoints == 4.0  # 2 checkpoints of 2 s
    assert measured.phases.saving == 4.0
    # 4 evaluations (before, 10, 20, the end) of 3 sample prompts x 32 new tokens
    assert measured.phases.sampling == pytest.approx(4 * 3 * run.sample_max_new_tokens * 0.05, 0.01)
    assert measured.phases.training == pytest.approx(measured.tokens / 500.0, abs=0.1)
    assert measured.duration_seconds == pytest.approx(measured.phases.total, abs=0.5)
    # with sample answers off, no evaluation spends time on them
    quiet = run.model_copy(update={"sample_answers": False})
    unsampled = estimate(quiet, entry, stats(), 40, hardware, cache, test_rows=10)
    assert unsampled.phases.sampling == 0
    assert unsampled.phases.evaluating == measured.phases.evaluating


# -- weight --------------------------------------------------------------------------------------


def test_importing_the_estimate_never_loads_torch() -> None:
    code = (
        "import sys, tuneforge.hardware, tuneforge.training.estimate, "
        "tuneforge.training.recommend, tuneforge.training.presets; "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_preference_pair_counts_two_sequences_and_its_reference_passes() -> None:
    from tuneforge.training.spec import DPOSpec, ORPOSpec

    entry = model("gemma-3-270m")
    settings = {"base_model": entry.id, "dataset_id": "d", "epochs": 1, "max_length": 512}
    sft = estimate(SFTSpec(**settings), entry, stats(), 900, cpu())
    dpo = estimate(DPOSpec(**settings), entry, stats(), 900, cpu())
    orpo = estimate(ORPOSpec(**settings), entry, stats(), 900, cpu())
    assert dpo.tokens == orpo.tokens == pytest.approx(2 * sft.tokens, abs=2)
    assert dpo.memory.activations_bytes > sft.memory.activations_bytes
    # ORPO trains the same tokens without a reference; DPO also scores both answers once.
    assert 2 * sft.training_seconds <= orpo.training_seconds < 2.6 * sft.training_seconds
    assert dpo.training_seconds > 1.2 * orpo.training_seconds


def test_several_devices_take_that_many_batches_a_step() -> None:
    """Each device takes a batch of each step: two devices make half the steps, and the advice
    that lowers the batch size keeps the examples a step sees."""
    one = spec(batch_size=4, gradient_accumulation=4)
    two = spec(batch_size=4, gradient_accumulation=4, devices=2)
    assert (one.effective_batch, two.effective_batch) == (16, 32)
    assert spec(devices="auto").effective_batch == spec().effective_batch  # decided by the worker
    entry = model("gemma-3-270m")
    assert estimate(two, entry, stats(), 900, cpu()).steps == 87  # ceil(900 / 32) x 3
    assert estimate(one, entry, stats(), 900, cpu()).steps == 171
    keys = {calibration_key(s, entry, cpu(), "bf16") for s in (one, two, spec(devices="auto"))}
    assert len(keys) == 2  # a run over two devices is measured apart; auto counts as one
