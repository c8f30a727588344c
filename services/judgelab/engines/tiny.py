"""A tiny randomly initialised chat model, built in-process, for fast tests.

Its tokenizer is byte-level BPE like SmolLM2's: every byte is a token, a few
merges make common English pieces single tokens, digits never merge (so "7" is
one token and "10" is two, as in SmolLM2), and " 7" is two tokens (space, 7).
The model is a 2-layer Llama with a fixed seed: outputs are gibberish but
deterministic, which is all the engine tests need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from judgelab.engines.chat import CHATML_TEMPLATE

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from judgelab.engines.transformers_engine import TransformersEngine

PAD, IM_START, IM_END = "<pad>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)

# Byte-level pieces ("Ġ" is the space byte). Kept short and fixed so ids never change.
MERGES = (
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("o", "n"),
    ("Ġ", "a"),
    ("r", "e"),
    ("Ġ", "s"),
    ("u", "s"),
    ("us", "er"),
    ("a", "s"),
    ("as", "s"),
    ("ass", "i"),
    ("assi", "s"),
    ("assis", "t"),
    ("assist", "an"),
    ("assistan", "t"),
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE tokenizer with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    for left, right in MERGES:
        vocab[left + right] = len(vocab)

    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(MERGES)))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=IM_END,
        bos_token=IM_START,
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
    )


def tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """Two-layer Llama, hidden size 64, weights drawn from ``seed`` (global RNG left untouched)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=SPECIAL_TOKENS.index(PAD),
        bos_token_id=SPECIAL_TOKENS.index(IM_START),
        eos_token_id=SPECIAL_TOKENS.index(IM_END),
        tie_word_embeddings=False,
        # Larger than the usual 0.02 so the random model has peaked, seed-dependent outputs.
        initializer_range=0.2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


def tiny_engine(seed: int = 0, max_batch_size: int = 8) -> TransformersEngine:
    """The tiny model behind the real engine, on CPU in float32."""
    import torch

    from judgelab.engines.transformers_engine import TransformersEngine

    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=seed)
    return TransformersEngine(
        model, tokenizer, max_batch_size=max_batch_size, device=torch.device("cpu"), name="tiny"
    )
