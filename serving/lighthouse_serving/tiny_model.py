"""A tiny LLaVA-shaped vision-language model, written as files, for tests and the demo.

It has no weights: vLLM serves it with ``load_format="dummy"`` (random weights, the same on every
run), so nothing is downloaded. What it says is meaningless, but every part of the real pipeline
runs: the chat template places the image token, the CLIP image processor turns a picture into
patches, the vision tower and projector feed the language model, and structured outputs constrain
its answer to a JSON schema. Its answers are deterministic at temperature 0 and the same for every
image (random weights ignore what they see), so tests check mechanics, never content.

The shape is the one that works with vLLM 0.32 on CPU (ENVIRONMENT.md): a Llama text model of
hidden size 128, 2 layers, 2 heads of 64 (head_dim 16 fails on the CPU attention backend), 1 KV
head; a CLIP vision tower of hidden size 64, 2 layers, 56x56 images in 14-pixel patches.

The tokenizer is byte-level BPE trained here, in-process, on a fixed text: every byte is in its
alphabet, so any text (Chinese, JSON punctuation, the incident categories) encodes and decodes
unchanged. The files are byte-for-byte the same on every run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# The categories the gateway's prompt asks the model to choose from.
CATEGORIES: Final = (
    "POTHOLE",
    "ROAD_OBSTACLE",
    "BROKEN_STREETLIGHT",
    "FALLEN_TREE",
    "FLOODING",
    "BLOCKED_DRAIN",
    "ILLEGAL_DUMPING",
    "ILLEGAL_PARKING",
    "TRAFFIC_SIGNAL_FAULT",
    "FIRE_SMOKE",
    "ILLEGAL_STREET_VENDOR",
    "POWER_LINE_HAZARD",
    "WATER_MAIN_LEAK",
)

# Special tokens, in id order: <unk>=0, <s>=1, </s>=2, <image>=3, <pad>=4.
SPECIAL_TOKENS: Final = ("<unk>", "<s>", "</s>", "<image>", "<pad>")
UNK_ID, BOS_ID, EOS_ID, IMAGE_ID, PAD_ID = range(5)
IMAGE_TOKEN: Final = "<image>"

VOCAB_SIZE: Final = 640
IMAGE_SIZE: Final = 56
PATCH_SIZE: Final = 14
MAX_POSITIONS: Final = 2048

# The chat template: a role-prefixed transcript; an image part becomes the image token on a line
# of its own (the processor expands it into one token per patch). String content is accepted too.
CHAT_TEMPLATE: Final = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ['image', 'image_url'] %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT: ' }}{% endif %}"
)

# CLIP's normalisation constants (what CLIPImageProcessor uses for OpenAI's CLIP).
_CLIP_MEAN: Final = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD: Final = [0.26862954, 0.26130258, 0.27577711]


def _training_text() -> list[str]:
    """What the tokenizer learns its merges from: the words and punctuation it will see most."""
    notes = [
        "pothole near the crossing",
        "streetlight out since last night",
        "tree fallen across two lanes",
        "water over the kerb",
        "drain blocked by leaves",
        "rubbish dumped by the river",
        "car parked on the pavement",
        "signal stuck on red",
        "smoke from a shop front",
        "vendor cart in the bus lane",
        "cable hanging low over the road",
        "water pouring from the main",
    ]
    lines = [
        "You are a city camera analyst. Report what needs a crew.",
        "Answer with JSON only.",
        "USER: ASSISTANT: SYSTEM:",
    ]
    for category, note in zip(CATEGORIES, notes, strict=False):
        finding = {"category": category, "note": note, "confidence": 0.9}
        lines.append(json.dumps({"findings": [finding]}))
        lines.append(f"{category} {category.lower()} {note}")
    lines.append(json.dumps({"findings": []}))
    lines.append("路面坑洞 路燈故障 路樹倒塌 淹水 水溝堵塞 違規停車 號誌故障 火災 漏水")
    return lines


def build_tokenizer() -> Tokenizer:
    """Train the byte-level BPE tokenizer (deterministic: same text, same merges)."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    return tokenizer


def model_config(vocab_size: int, variant: int = 0) -> dict[str, Any]:
    """``config.json`` of the LLaVA model (transformers' ``LlavaConfig``). A ``variant`` other
    than 0 widens the text model: vLLM's dummy loader draws every tensor from the same seed, so
    only a different shape gives different weights, and so different answers (two variants
    stand in for two versions of a model). A wider feed-forward layer is not enough: its share
    of the random model's output is too small to change a word; wider embeddings are."""
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": IMAGE_ID,
        "image_seq_length": (IMAGE_SIZE // PATCH_SIZE) ** 2,
        "projector_hidden_act": "gelu",
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": 128 + 256 * variant,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 64,
            "max_position_embeddings": MAX_POSITIONS,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "hidden_act": "silu",
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_channels": 3,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "projection_dim": 64,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
    }


def tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "model_max_length": MAX_POSITIONS,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "extra_special_tokens": {"image_token": IMAGE_TOKEN},
    }


def image_processor_config() -> dict[str, Any]:
    """``preprocessor_config.json``: CLIP's processing at 56x56."""
    return {
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "LlavaProcessor",
        "do_resize": True,
        "size": {"shortest_edge": IMAGE_SIZE},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": _CLIP_MEAN,
        "image_std": _CLIP_STD,
        "do_convert_rgb": True,
    }


def processor_config() -> dict[str, Any]:
    """``processor_config.json``: how LlavaProcessor expands the image token."""
    return {
        "processor_class": "LlavaProcessor",
        "image_token": IMAGE_TOKEN,
        "patch_size": PATCH_SIZE,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
    }


def model_files(variant: int = 0) -> dict[str, str]:
    """Every file of the model directory (of ``variant``), by name, as text."""
    tokenizer = build_tokenizer()
    return {
        "config.json": _json(model_config(tokenizer.get_vocab_size(), variant)),
        "tokenizer.json": tokenizer.to_str(pretty=True) + "\n",
        "tokenizer_config.json": _json(tokenizer_config()),
        "special_tokens_map.json": _json(
            {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        ),
        "preprocessor_config.json": _json(image_processor_config()),
        "processor_config.json": _json(processor_config()),
        "chat_template.jinja": CHAT_TEMPLATE,
        "generation_config.json": _json(
            {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
        ),
        "README.md": (
            "# Lighthouse tiny VLM\n\nA LLaVA-shaped model with no weights, written by "
            "`python -m lighthouse_serving tiny-model DIR`. Serve it with load_format=dummy "
            "(random weights): for tests and the demo only, it knows nothing.\n"
        ),
    }


def write_tiny_model(directory: Path | str, variant: int = 0) -> Path:
    """Write (or rewrite, identically) the tiny model's files (of ``variant``) into
    ``directory``.

    Files are written to a temporary name and renamed, so a reader never sees half a file.
    Returns the directory.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for name, text in model_files(variant).items():
        path = target / name
        data = text.encode("utf-8")
        if path.is_file() and path.read_bytes() == data:
            continue
        partial = path.with_name(f".{name}.{os.getpid()}.partial")  # writers may race
        partial.write_bytes(data)
        partial.replace(path)
    return target


def is_tiny_model(directory: Path | str, variant: int = 0) -> bool:
    """Whether ``directory`` holds exactly the files ``write_tiny_model`` writes for
    ``variant``."""
    target = Path(directory)
    return all(
        (target / name).is_file() and (target / name).read_text(encoding="utf-8") == text
        for name, text in model_files(variant).items()
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
