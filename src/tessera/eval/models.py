"""The models the harness evaluates: a Tessera GPT, or a Hugging Face causal LM folder.

Both are seen through `EvalModel`: encode text, give the logits at chosen positions of a
right-padded batch, and generate greedily. `logits_at` computes the output layer only at the
positions asked for: a forward pre-hook on the output layer hands it those hidden states,
so the [batch, length, vocab] logits tensor (gigabytes for a 50k vocabulary) never exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from tessera.core.errors import ConfigError, UserError

ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class EvalModel:
    """What the harness needs from a language model."""

    name: str = "model"
    max_length: int = 0
    shares_contexts = False  # whether `shared_context_logits` exists (a KV cache to reuse)
    eos_id: int | None = None
    prefix_id: int | None = None  # conditions a continuation whose context is empty

    def __init__(
        self, module: nn.Module, output_layer: nn.Module, autocast: torch.dtype | None
    ) -> None:
        self.module = module
        self.output_layer = output_layer
        self.autocast = autocast  # run under autocast to this dtype (weights kept as they are)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def encode(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def logits_at(self, ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Logits [N, vocab] at positions (rows[i], cols[i]) of `ids` [B, T] (no mask: padding
        sits at the right, after every position that is read)."""
        with self._select(rows, cols), self._precision():
            logits = self.forward(ids)
        if logits.dim() != 2 or logits.shape[0] != rows.shape[0]:
            raise RuntimeError(
                f"{type(self.module).__name__} reshaped its output layer's result "
                f"(got {tuple(logits.shape)}); the harness cannot select positions for it."
            )
        return logits

    @contextlib.contextmanager
    def _select(self, rows: torch.Tensor, cols: torch.Tensor) -> Iterator[None]:
        def pick(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (args[0][rows, cols], *args[1:])

        handle = self.output_layer.register_forward_pre_hook(pick)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        """Autocast when asked for, and attention kept off cuDNN's backend: it builds a new
        plan for every new sequence length (tens of ms each, measured while decoding in
        serve/generate.py), and every batch here has a length of its own."""
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with autocast, sdpa_kernel(ATTENTION_BACKENDS):
            yield

    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, stop: list[str]
    ) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class TesseraModel(EvalModel):
    """A Tessera GPT with the tokenizer it was trained with."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        name: str = "tessera",
        autocast: torch.dtype | None = None,
    ) -> None:
        if tokenizer is None:
            raise UserError(
                f"{name}: the model carries no tokenizer, so text cannot be turned into tokens; "
                "pass --tokenizer SPEC (a tokenizer JSON, 'byte' or 'char:TEXT_FILE': the one "
                "the model was trained with)."
            )
        super().__init__(model, model.lm_head, autocast)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = model.config.max_seq_len
        self.eos_id = getattr(tokenizer, "eos_id", None)
        self.prefix_id = self.eos_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.run(ids)

    shares_contexts = True

    @torch.no_grad()
    def shared_context_logits(
        self,
        contexts: torch.Tensor,
        valid: torch.Tensor,
        continuations: torch.Tensor,
        owners: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each context once, then every continuation over a copy of its context's KV cache.

        contexts [G, Lc] are left-padded (`valid` marks real tokens), continuations [R, Lk]
        right-padded, `owners[r]` the context of continuation r. Returns the logits after each
        context's last token [G, V] and at continuation positions (rows, cols) [N, V]."""
        groups, length = contexts.shape
        cache = self.model.new_cache(groups, length + continuations.shape[1])
        last = torch.full((groups,), length - 1, device=contexts.device)
        with self._select(torch.arange(groups, device=contexts.device), last), self._precision():
            first = self.model.run(contexts, cache=cache, attention_mask=valid)
        cache.select(owners)
        mask = torch.cat([valid[owners], torch.ones_like(continuations, dtype=torch.bool)], 1)
        with self._select(rows, cols), self._precision():
            rest = self.model.run(continuations, cache=cache, attention_mask=mask)
        return first, rest

    def generate(self, prompts: list[list[int]], max_new_tokens: int, stop: list[str]) -> list[str]:
        from tessera.serve.generate import Sampling, generate_ids

        def hit_stop(row: int, new_ids: list[int]) -> bool:
            tail = self.decode(new_ids[-64:])
            return any(text in tail for text in stop)

        sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)
        with self._precision():
            new = generate_ids(self.model, prompts, sampling, self.eos_id, should_stop=hit_stop)
        return [self.decode(ids) for ids in new]


class HFModel(EvalModel):
    """A local Hugging Face causal LM folder, through `transformers` (AutoModelForCausalLM).

    Text is encoded as lm-evaluation-harness encodes it: with the tokenizer's default special
    tokens (a BOS where the tokenizer adds one)."""

    def __init__(
        self, folder: str | Path, device: torch.device, dtype: torch.dtype, tokenizer=None
    ):
        from tessera.models.hf_folder import from_folder

        transformers = _transformers()
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"--hf {folder}: not a Hugging Face model folder (no config.json there); give "
                "the folder `save_pretrained` or `tessera export hf` wrote."
            )
        try:
            self.tokenizer = from_folder(
                transformers.AutoTokenizer, tokenizer or folder, "--hf/--tokenizer"
            )
        except (OSError, ValueError) as error:
            raise UserError(
                f"--hf {folder}: no tokenizer could be loaded ({str(error).splitlines()[0]}); "
                "pass --tokenizer FOLDER naming a folder with the model's tokenizer files "
                "(tokenizer.json or the files AutoTokenizer reads)."
            ) from None
        key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        model = from_folder(transformers.AutoModelForCausalLM, folder, "--hf", **{key: dtype})
        model = model.to(device).eval()
        output = model.get_output_embeddings()
        if output is None:
            raise UserError(f"--hf {folder}: the model has no output layer to score tokens with.")
        super().__init__(model, output, autocast=None)
        self.name = folder.name
        self.max_length = _max_length(model.config, self.tokenizer)
        self.eos_id = self.tokenizer.eos_token_id
        self.prefix_id = (
            self.tokenizer.bos_token_id
            if self.tokenizer.bos_token_id is not None
            else self.tokenizer.eos_token_id
        )

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module(input_ids=ids).logits

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, stop: list[str]) -> list[str]:
        longest = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.eos_id or 0)
        ids = torch.full((len(prompts), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = torch.tensor(prompt)
            mask[row, longest - len(prompt) :] = 1
        with self._precision():
            out = self.module.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                stop_strings=stop or None,
                tokenizer=self.tokenizer,
            )
        return [self.decode(row[longest:].tolist()) for row in out]


def _max_length(config: Any, tokenizer: Any) -> int:
    """The context length, read where lm-evaluation-harness reads it."""
    for attribute in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(config, attribute, None):
            return int(getattr(config, attribute))
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**9 else 2048


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "evaluating a Hugging Face model needs `transformers`: "
            "pip install 'tessera-train[eval]'"
        ) from None
    return transformers


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    path: str | None = None,
    hf: str | None = None,
    tokenizer: str | None = None,
    device: str | None = None,
    dtype: str = "auto",
) -> EvalModel:
    """A Tessera run (folder, final/ or checkpoint .pt) or a Hugging Face folder, ready to
    evaluate. dtype 'auto' is bfloat16 on a GPU and float32 elsewhere."""
    chosen = torch.device(device) if device else default_device()
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if chosen.type == "cuda" else torch.float32
    elif dtype in dtypes:
        torch_dtype = dtypes[dtype]
    else:
        raise ConfigError(f"--dtype {dtype!r}: use auto, {', '.join(dtypes)}.")
    if hf is not None:
        return HFModel(hf, chosen, torch_dtype, tokenizer)
    if path is None:
        raise UserError("give a run folder, final/ folder or checkpoint to evaluate, or --hf PATH.")
    model = _load_tessera(Path(path))
    if tokenizer is not None:
        from tessera.data.text.tokenizers import load_tokenizer

        model.tokenizer = load_tokenizer(tokenizer)
    # Weights stay fp32 and run under autocast: casting the model would also round its RoPE
    # tables to bf16.
    model = model.to(chosen).eval()
    autocast = torch_dtype if torch_dtype != torch.float32 else None
    return TesseraModel(model, model.tokenizer, name=Path(path).name, autocast=autocast)


def _load_tessera(path: Path) -> nn.Module:
    """The GPT of a run folder or final/ folder, or of a checkpoint .pt beside its run's
    config.yaml."""
    from tessera.models.gpt.checkpoint import load_gpt

    if path.is_file() and path.suffix == ".pt":
        from tessera.config.build import build_trained_model

        return build_trained_model(path)[1]
    return load_gpt(path)
