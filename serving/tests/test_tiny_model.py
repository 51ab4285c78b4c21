"""The tiny model's files: deterministic, loadable offline, and a tokenizer that loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lighthouse_serving.cli import app
from lighthouse_serving.tiny_model import (
    CATEGORIES,
    IMAGE_ID,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    is_tiny_model,
    model_files,
    write_tiny_model,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _digest(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_the_files_are_the_same_bytes_every_time(tmp_path: Path, model_dir: Path) -> None:
    again = write_tiny_model(tmp_path / "again")
    assert _digest(again) == _digest(model_dir)
    assert is_tiny_model(again)
    (again / "config.json").write_text("{}", encoding="utf-8")
    assert not is_tiny_model(again)
    write_tiny_model(again)
    assert _digest(again) == _digest(model_dir)


def test_a_variant_differs_in_shape_alone(tmp_path: Path, model_dir: Path) -> None:
    """vLLM's dummy loader seeds every tensor alike: only another shape gives other weights."""
    variant = write_tiny_model(tmp_path / "b", variant=1)
    assert is_tiny_model(variant, 1) and not is_tiny_model(variant)
    assert not is_tiny_model(model_dir, 1)
    ours, theirs = (json.loads((d / "config.json").read_text()) for d in (model_dir, variant))
    assert theirs["text_config"].pop("hidden_size") == 384
    assert ours["text_config"].pop("hidden_size") == 128
    assert ours == theirs
    changed = {
        name for name, digest in _digest(variant).items() if _digest(model_dir)[name] != digest
    }
    assert changed == {"config.json"}


def test_the_files_are_the_documented_shape(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    text, vision = config["text_config"], config["vision_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (
        128,
        2,
        2,
    )
    assert text["hidden_size"] // text["num_attention_heads"] == text["head_dim"] == 64
    assert text["num_key_value_heads"] == 1
    assert (vision["hidden_size"], vision["image_size"], vision["patch_size"]) == (64, 56, 14)
    assert config["image_token_index"] == IMAGE_ID
    image = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert image["image_processor_type"] == "CLIPImageProcessor"
    assert image["crop_size"] == {"height": 56, "width": 56}
    assert not list(model_dir.glob("*.safetensors"))  # served with load_format=dummy


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def test_the_tokenizer_loads_offline_with_its_special_tokens(tokenizer: Any) -> None:
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"
    assert tokenizer.pad_token == "<pad>" and tokenizer.unk_token == "<unk>"
    config = json.loads((Path(tokenizer.name_or_path) / "config.json").read_text())
    assert len(tokenizer) <= config["text_config"]["vocab_size"]


SAMPLES = [
    *CATEGORIES,
    json.dumps(
        {"findings": [{"category": c, "note": "near the crossing"} for c in CATEGORIES[:3]]}
    ),
    '{"findings":[]}',
    '路面坑洞 at 高雄市苓雅區 — 3.5 m², 😀 \t\n{}[]:,"\\',
    "  leading and trailing spaces  ",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_any_text_round_trips(tokenizer: Any, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_every_category_decodes_whole(tokenizer: Any) -> None:
    for category in CATEGORIES:
        ids = tokenizer.encode(category, add_special_tokens=False)
        pieces = "".join(tokenizer.decode([i]) for i in ids)
        assert pieces == category


def test_the_chat_template_places_the_image_token(tokenizer: Any) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": "What needs a crew?"},
            ],
        }
    ]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == f"<s>USER: {IMAGE_TOKEN}\nWhat needs a crew?\nASSISTANT: "
    plain = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert plain == "<s>USER: hello\nASSISTANT: "


def test_the_processor_expands_the_image_into_patches(model_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    prompt = f"<s>USER: {IMAGE_TOKEN}\nWhat needs a crew?\nASSISTANT: "
    image = Image.new("RGB", (320, 240), (200, 30, 30))
    batch = processor(images=image, text=prompt, return_tensors="pt")
    assert tuple(batch["pixel_values"].shape) == (1, 3, 56, 56)
    ids = batch["input_ids"][0].tolist()
    assert ids.count(IMAGE_ID) == (56 // 14) ** 2  # one per patch ("default": no CLS token)


def test_the_cli_writes_the_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str((tmp_path / "cli").resolve())
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(model_files())
