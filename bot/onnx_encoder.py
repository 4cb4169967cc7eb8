"""An ONNX Runtime int8 encoder for questions (QUESTION_ENCODER=onnx).

The bundled sentence-transformers model is exported once with ``torch.onnx.export`` (the
TorchScript exporter: no network, no onnxscript), quantized with onnxruntime's
``quantize_dynamic`` (int8 weights per channel, matrix multiplies only) and cached in a
folder named after the model id and a hash of its weights. After that, encoding a question
needs onnxruntime and the tokenizer only: no torch, no sentence-transformers.

Only questions go through it. Chunks are embedded by the torch model at index time: the
int8 encoder is slower than torch on long texts, and the stored vectors must not depend
on this setting. The pipeline is the sentence-transformers one: the same tokenizer and
maximum length, mean pooling over the attention mask, unit length.

A cached folder holds ``model.int8.onnx`` and ``encoder.json`` (written last) with the
file's size and SHA-256; a folder whose file does not match, or that onnxruntime cannot
load, is exported again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from bot.embedding import TOKEN_COUNT_CACHE, normalize, resolve_model_path
from bot.errors import ConfigError

log = logging.getLogger(__name__)

# Bump when the export or quantization recipe changes: a cached folder of another format is redone.
EXPORT_FORMAT = 1
OPSET = 17
MODEL_FILE = "model.int8.onnx"
META_FILE = "encoder.json"
# The files whose bytes decide the vectors; their hash names the cache folder.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json", "tokenizer_config.json",
                 "sentence_bert_config.json", "modules.json", "1_Pooling/config.json")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model_path: Path) -> str:
    """SHA-256 over the model's weight, configuration and tokenizer files (names included)."""
    digest = hashlib.sha256()
    for name in _WEIGHT_FILES:
        path = model_path / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + _sha256(path).encode() + b"\0")
    return digest.hexdigest()


def cache_folder(cache_dir: Path, model_id: str, digest: str) -> Path:
    """``<cache_dir>/<model id>-<first 16 hex of the weights' hash>``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"
    return Path(cache_dir) / f"{slug}-{digest[:16]}"


def _check_mean_pooling(model_path: Path) -> int:
    """The model's maximum sequence length, after checking it is Transformer -> mean Pooling
    (-> Normalize), the only pipeline this encoder reproduces."""
    try:
        modules = json.loads((model_path / "modules.json").read_text(encoding="utf-8"))
        pooling = json.loads((model_path / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        max_length = int(json.loads((model_path / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"QUESTION_ENCODER=onnx needs a sentence-transformers model folder ({exc}); use QUESTION_ENCODER=torch") from None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if kinds[:2] != ["Transformer", "Pooling"] or modes != {"pooling_mode_mean_tokens"} or set(kinds[2:]) - {"Normalize"}:
        raise ConfigError(
            f"QUESTION_ENCODER=onnx reproduces Transformer -> mean pooling models only; {model_path} has "
            f"{' -> '.join(kinds)} with {sorted(modes)}; use QUESTION_ENCODER=torch"
        )
    return max_length


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cached_model_is_intact(folder: Path, digest: str) -> bool:
    """The folder's int8 model is the one its ``encoder.json`` describes, for these weights."""
    meta = _read_meta(folder)
    model = folder / MODEL_FILE
    if not meta or meta.get("format") != EXPORT_FORMAT or meta.get("weights_sha256") != digest or not model.is_file():
        return False
    return model.stat().st_size == meta.get("size") and _sha256(model) == meta.get("sha256")


def export_int8(model_path: Path, target: Path) -> None:
    """Export the model's transformer to ONNX and quantize it into ``target/model.int8.onnx``.

    Needs torch and transformers (once per model and weights). The graph outputs the token
    vectors; pooling happens outside, as sentence-transformers does it.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    # Eager attention: the SDPA path decides from the traced mask's values whether to apply
    # a mask at all, and a trace would freeze that decision.
    bert = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()

    class TokenVectors(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.full((2, 8), 101, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # trace with padding so the mask's path is in the graph
    float_model = target / "model.float.onnx"
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "token_vectors")}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and that the trace treats some
        # shapes as constants; the graph is checked against torch by the tests instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenVectors(bert), (ids, mask, torch.zeros_like(ids)), str(float_model), input_names=list(_INPUTS),
                          output_names=["token_vectors"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    quantize_dynamic(str(float_model), str(target / MODEL_FILE), per_channel=True, op_types_to_quantize=["MatMul"],
                     weight_type=QuantType.QInt8)
    float_model.unlink()


def ensure_int8_model(model_id: str, cache_dir: Path) -> Path:
    """The cached int8 model's folder for ``model_id``, exported first when missing or damaged.

    Exported into a temporary folder beside the cache and renamed into place, so a crash
    leaves no half-written folder under the final name; a damaged one is moved aside first.
    """
    model_path = Path(resolve_model_path(model_id))
    digest = weights_digest(model_path)
    folder = cache_folder(cache_dir, model_id, digest)
    if cached_model_is_intact(folder, digest):
        return folder
    _check_mean_pooling(model_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to ONNX int8 in %s (once)", model_id, folder)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        export_int8(model_path, work)
        model = work / MODEL_FILE
        meta = {"format": EXPORT_FORMAT, "model_id": model_id, "weights_sha256": digest, "opset": OPSET,
                "quantization": "dynamic int8, per channel, MatMul only", "size": model.stat().st_size, "sha256": _sha256(model)}
        (work / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if folder.exists():
            broken = folder.with_name(f".{folder.name}-broken-{os.getpid()}")
            folder.rename(broken)
            shutil.rmtree(broken, ignore_errors=True)
        try:
            work.rename(folder)
        except OSError:  # another process finished the same export first
            if not cached_model_is_intact(folder, digest):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


class OnnxQuestionEncoder:
    """MiniLM questions on onnxruntime int8: the Embedder protocol, without torch."""

    def __init__(self, model_id: str, cache_dir: Path):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import onnxruntime
        from tokenizers import Tokenizer

        model_path = Path(resolve_model_path(model_id))
        self.model_id = model_id
        self.max_tokens = _check_mean_pooling(model_path)
        folder = ensure_int8_model(model_id, cache_dir)
        try:
            self._session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
        except Exception:  # intact bytes that onnxruntime still refuses (another version's export): redo once
            log.warning("onnxruntime could not load %s; exporting again", folder)
            shutil.rmtree(folder, ignore_errors=True)
            folder = ensure_int8_model(model_id, cache_dir)
            self._session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
        self.folder = folder
        self.dimension = int(self._session.get_outputs()[0].shape[-1])
        # sentence-transformers truncates at max_seq_length (256), not at the 128 tokenizer.json says.
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        self._counter = copy.deepcopy(self._tokenizer)
        self._counter.no_truncation()
        self._counts: dict[str, int] = {}

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """One text per run: dynamic int8 quantization scales activations over the whole
        batch, so in a batch a question's vector would depend on its batch-mates' padding."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        rows = []
        for encoding in self._tokenizer.encode_batch(list(texts)):
            feed = {name: np.array([values], dtype=np.int64)
                    for name, values in zip(_INPUTS, (encoding.ids, encoding.attention_mask, encoding.type_ids))}
            tokens = self._session.run(None, feed)[0][0]  # (tokens, dimension), no padding
            rows.append(tokens.mean(axis=0))
        return normalize(np.vstack(rows))

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces of each text, untruncated, as ``SentenceTransformerEmbedder.count_tokens``."""
        if not texts:
            return []
        known = {t: self._counts.get(t) for t in texts}
        missing = [t for t, count in known.items() if count is None]
        if missing:
            for text, encoding in zip(missing, self._counter.encode_batch(missing, add_special_tokens=False)):
                known[text] = self._counts[text] = len(encoding.ids)
            while len(self._counts) > TOKEN_COUNT_CACHE:
                self._counts.pop(next(iter(self._counts)), None)
        return [known[t] for t in texts]
