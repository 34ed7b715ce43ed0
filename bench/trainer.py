"""Benchmark: limi's trainer versus the plain Hugging Face Trainer on the same tiny model and data (CPU).

Both sides fine-tune the same tiny Qwen2-style model (limi_trainer.tiny) on the same synthetic
tool-use conversations, tokenized and masked by the same renderer, with the same optimizer
settings, fp32, sdpa attention, in this run:
- limi: `python -m limi_trainer.run_job` (DeepSpeed ZeRO-2, single process, gloo), samples packed
  into token budgets with block-diagonal attention, loss only at trained positions;
- hf: `transformers.Trainer` with per-batch padding to the longest sample (DataCollatorForSeq2Seq),
  micro-batches of --hf-batch samples and gradient accumulation to the same global batch.
Throughput is real (non-padding) tokens per second of training-step time (model loading and
DeepSpeed start-up excluded on both sides). Packing efficiency is real tokens over the token
slots computed: for limi the packs' token budget, for hf the padded batches.

It also prints the packing efficiency of the trainer's own planner on a LIMI-like length
distribution (78 samples of 13k-152k tokens, mean 42.4k; over 125k dropped, the rest repeated
twice, 4 epochs, global batch 64, 131,072-token packs): lengths only, no training.

Usage: python bench/trainer.py [--samples 48] [--epochs 2] [--repeats 2] [--json bench/results/trainer.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time


def render_dataset(
    model_dir: pathlib.Path, count: int, seed: int, max_rounds: int, data_path: pathlib.Path
) -> list[tuple[list[int], list[int]]]:
    from transformers import AutoTokenizer

    from limi_core.limi_format import dumps_sample
    from limi_testing.synthetic_samples import varied_length_samples
    from limi_trainer.rendering import render_sample

    samples = varied_length_samples(count, seed=seed, max_rounds=max_rounds)
    data_path.write_text("".join(dumps_sample(s) + "\n" for s in samples))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rendered = [render_sample(tokenizer, s) for s in samples]
    return [
        (list(r.input_ids), [t if m else -100 for t, m in zip(r.input_ids, r.loss_mask, strict=False)])
        for r in rendered
    ]


def run_limi(model_dir: pathlib.Path, data_path: pathlib.Path, work: pathlib.Path, args) -> dict:
    from limi_trainer import hyperparameters
    from limi_trainer.dataset import DatasetInput
    from limi_trainer.run_config import RunConfig, run_id_for

    hp = hyperparameters.resolve(
        "tiny-cpu",
        {
            "epochs": str(args.epochs),
            "global_batch_size": str(args.global_batch),
            "pack_tokens": str(args.pack_tokens),
            "max_sample_tokens": str(args.pack_tokens),
            "learning_rate": "0.001",
            "min_learning_rate": "0.0001",
            "checkpoint_every_steps": "0",
            "zero_stage": "2",
            "weight_decay": "0.0",
        },
    )
    source = DatasetInput(uri=data_path.as_uri(), dataset_id="bench")
    run_dir = work / "limi-run"
    RunConfig(run_id_for(source, str(model_dir), "tiny-cpu", hp), source, str(model_dir), "tiny-cpu", hp, "bench").save(
        run_dir
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "limi_trainer.run_job", str(run_dir)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"limi training failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    busy = sum(step["seconds"] for step in summary["steps"])
    return {
        "tokens": summary["plan"]["tokens"],
        "seconds": busy,
        "tokens_per_second": summary["plan"]["tokens"] / busy,
        "packing_efficiency": summary["plan"]["packing_efficiency"],
        "optimizer_steps": summary["plan"]["total_steps"],
        "micro_batches": summary["plan"]["micro_batches"],
        "first_loss": summary["first_loss"],
        "final_loss": summary["final_loss"],
        "process_seconds": time.perf_counter() - started,
    }


def run_hf(model_dir: pathlib.Path, data: list[tuple[list[int], list[int]]], work: pathlib.Path, args) -> dict:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    features = [{"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)} for ids, labels in data]
    padding = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    counts = {"real": 0, "slots": 0}

    def collate(batch):
        padded = padding(batch)
        counts["real"] += int(padded["attention_mask"].sum())
        counts["slots"] += padded["input_ids"].numel()
        return padded

    training_args = TrainingArguments(
        output_dir=str(work / "hf-run"),
        per_device_train_batch_size=args.hf_batch,
        gradient_accumulation_steps=max(1, args.global_batch // args.hf_batch),
        num_train_epochs=args.epochs,
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=features, data_collator=collate)
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "tokens": counts["real"],
        "seconds": seconds,
        "tokens_per_second": counts["real"] / seconds,
        "packing_efficiency": counts["real"] / counts["slots"],
        "optimizer_steps": trainer.state.global_step,
        "micro_batches": math.ceil(len(data) / args.hf_batch) * args.epochs,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
    }


def limi_like_packing() -> dict:
    from limi_testing.synthetic_samples import limi_like_lengths
    from limi_trainer.packing import build_plan, first_fit_decreasing, optimizer_steps

    lengths = limi_like_lengths()
    kept = [n for n in lengths if n <= 125_000] * 2
    by_index = dict(enumerate(kept))
    budget = 131_072
    figures = {
        "samples": len(lengths),
        "kept_after_125k_drop_and_repeat": len(kept),
        "mean_tokens": statistics.mean(lengths),
        "min_tokens": min(lengths),
        "max_tokens": max(lengths),
    }
    for world in (1, 8):
        runs = [
            build_plan(
                by_index,
                dict.fromkeys(by_index, 0),
                epochs=4,
                global_batch_size=64,
                seed=seed,
                drop_last=False,
                budget=budget,
                world_size=world,
            )
            for seed in range(4)
        ]
        figures[f"limi_world{world}"] = [round(plan.packing_efficiency, 4) for plan in runs]
    steps = [optimizer_steps(range(len(kept)), epochs=4, global_batch_size=64, seed=seed) for seed in range(4)]
    total = 4 * sum(kept)
    figures["first_fit_decreasing_world1"] = [
        round(total / (sum(len(first_fit_decreasing(by_index, s, budget)) for s in run) * budget), 4) for run in steps
    ]
    figures["bound_world1"] = [
        round(total / (sum(math.ceil(sum(by_index[i] for i in s) / budget) for s in run) * budget), 4) for run in steps
    ]
    figures["padded_batches_of_2"] = [
        round(total / sum(2 * max(by_index[i] for i in s[k : k + 2]) for s in run for k in range(0, len(s), 2)), 4)
        for run in steps
    ]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=48, help="synthetic conversations (default 48)")
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=12,
        help="most tool rounds per conversation: sets the longest sample (default 12)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs on each side (default 2)")
    parser.add_argument(
        "--global-batch", type=int, default=8, help="samples per optimizer step on each side (default 8)"
    )
    parser.add_argument(
        "--hf-batch",
        type=int,
        default=4,
        help="Hugging Face micro-batch size (padded to its longest sample; default 4)",
    )
    parser.add_argument(
        "--pack-tokens", type=int, default=3072, help="limi's token budget per packed micro-batch (default 3072)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of each side, interleaved; the best of each is reported (default 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from limi_trainer.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="limi-bench-trainer-") as tmp:
        work = pathlib.Path(tmp)
        model_dir = build_tiny_model(work / "model")
        data = render_dataset(model_dir, args.samples, args.seed, args.max_rounds, work / "data.jsonl")
        lengths = [len(ids) for ids, _labels in data]
        longest = max(lengths)
        if longest > args.pack_tokens:
            parser.error(f"the longest sample has {longest} tokens, over --pack-tokens {args.pack_tokens}")
        limi_runs, hf_runs = [], []
        for repeat in range(args.repeats):  # interleaved, best of each: load from other processes hits both sides alike
            limi_runs.append(run_limi(model_dir, work / "data.jsonl", work / f"limi-{repeat}", args))
            hf_runs.append(run_hf(model_dir, data, work / f"hf-{repeat}", args))
        limi = max(limi_runs, key=lambda run: run["tokens_per_second"])
        hf = max(hf_runs, key=lambda run: run["tokens_per_second"])
    packing = limi_like_packing()
    ratio = limi["tokens_per_second"] / hf["tokens_per_second"]

    print(
        f"\nTiny model (hidden 128, 2 layers), {args.samples} conversations of {min(lengths)}-{longest} tokens (mean {statistics.mean(lengths):.0f}), "
        f"{args.epochs} epochs, global batch {args.global_batch}, CPU fp32, torch threads {__import__('torch').get_num_threads()}\n"
    )
    print("| trainer | real tokens/s | packing efficiency | optimizer steps | micro-batches | loss first -> last |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, figures in (
        ("limi (DeepSpeed ZeRO-2, packed)", limi),
        (f"Hugging Face Trainer (batches of {args.hf_batch}, padded)", hf),
    ):
        print(
            f"| {name} | {figures['tokens_per_second']:,.0f} | {figures['packing_efficiency']:.1%} | {figures['optimizer_steps']} | {figures['micro_batches']} | "
            f"{figures['first_loss']:.3f} -> {figures['final_loss']:.3f} |"
        )
    every = {
        name: ", ".join(f"{run['tokens_per_second']:,.0f}" for run in runs)
        for name, runs in (("limi", limi_runs), ("hf", hf_runs))
    }
    print(
        f"\nthroughput ratio limi / Hugging Face: {ratio:.2f}x (best of {args.repeats} interleaved runs each; all runs: limi {every['limi']}; hf {every['hf']})"
    )
    print(
        f"\nLIMI-like lengths ({packing['samples']} samples, {packing['min_tokens']}-{packing['max_tokens']} tokens, mean {packing['mean_tokens']:.0f}; "
        f"{packing['kept_after_125k_drop_and_repeat']} rows after the 125k drop and 2x repeat; 4 epochs, global batch 64, 131,072-token packs), seeds 0-3:"
    )
    print("| planner | packing efficiency per data-order seed |")
    print("| --- | --- |")
    for key, label in (
        ("limi_world1", "limi, 1 rank"),
        ("limi_world8", "limi, 8 ranks (equal packs per rank)"),
        ("first_fit_decreasing_world1", "first-fit-decreasing, 1 rank"),
        ("bound_world1", "lower bound ceil(tokens/budget) per step, 1 rank"),
        ("padded_batches_of_2", "per-batch padding, batches of 2"),
    ):
        print(f"| {label} | {', '.join(f'{v:.1%}' for v in packing[key])} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "limi": limi,
                    "hf": hf,
                    "ratio": ratio,
                    "limi_runs": limi_runs,
                    "hf_runs": hf_runs,
                    "limi_like_packing": packing,
                    "arguments": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
