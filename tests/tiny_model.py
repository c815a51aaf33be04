"""Build a tiny random Llama causal LM and its tokenizer on disk, offline, for tests and benchmarks."""

from __future__ import annotations

import random
from pathlib import Path

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"

# A deliberately plain template: the backend must work with any template a real model ships.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_SUBJECTS = ["the cat", "a dog", "my friend", "the model", "our team", "the river", "a robot"]
_VERBS = ["sees", "likes", "builds", "reads", "moves", "writes", "answers", "finds"]
_OBJECTS = ["the mat", "a book", "the report", "some code", "the sky", "a question", "the data"]
_TAILS = ["today.", "again!", "slowly.", "at night.", "with care.", "for 5 minutes.", "?"]


def synthetic_lines(count: int, seed: int = 0) -> list[str]:
    """Deterministic short English-like lines; enough variety for a 512-token BPE vocabulary."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        f" {rng.randint(0, 999)}"
        for _ in range(count)
    ]


def build_tiny_llama(directory: Path, seed: int = 0) -> Path:
    """Write a ~0.6 MB random LlamaForCausalLM plus tokenizer (with chat template) into `directory`.

    The weights are random under `seed`, so generated text is noise: assert shapes and counts only.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)

    raw = Tokenizer(models.BPE(unk_token=UNK))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(synthetic_lines(3000, seed), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
